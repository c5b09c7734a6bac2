"""Backtest: replay daily Parquet files through NDAlphaEngine (``python -m prod.backtest``), the
synthetic day generator (``python -m prod.backtest.synth``), the day-file reader and the reports."""
