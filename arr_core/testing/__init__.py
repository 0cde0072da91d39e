"""Doubles for unit tests (a dict table, in-memory queues); never deployed (.funcignore), never imported by the app."""
