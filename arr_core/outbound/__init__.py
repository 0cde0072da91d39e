"""Calls to receivers we do not control: webhook deliveries, and the rules for the URLs the app calls."""
