"""The HTTP contract's models (docs/API.md) and how a session is presented in them."""
