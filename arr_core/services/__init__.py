"""What the functions call: sessions, the cleanup, history queries, notifications; and the app's context."""
