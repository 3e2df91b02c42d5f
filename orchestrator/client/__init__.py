"""The `farm` command: the HTTP client of the orchestrator, the local farm and the demo."""
