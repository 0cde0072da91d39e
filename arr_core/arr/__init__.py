"""The ARR Session Management REST API (2021-01-01) client and what it needs: all the command line uses. No Azure SDK."""
