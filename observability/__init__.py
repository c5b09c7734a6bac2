"""Observability: the TUI, the web console, the alerts and the test-results view; they read bus payloads only."""
