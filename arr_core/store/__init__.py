"""Storage: the history store over the table port, the table and queue ports, and their Azure adapters."""
