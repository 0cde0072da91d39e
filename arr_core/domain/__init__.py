"""The rules of session history, the cleanup and notifications, as pure functions and data: no I/O, no Azure SDK, no httpx."""
