"""event_trader: the event-driven trader (listener on scans → NDAlphaEngine → fills, journal)."""
