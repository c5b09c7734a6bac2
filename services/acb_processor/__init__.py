"""acb_processor: ACB v6 boost and beta from ExF, scans and OB macro (bible §10)."""
