"""The scan file contract: the Arrow scan archive (``arrow_io``) and the daily Parquet files (``daily``).

Every writer and reader of these files (scanner, scan bridge, flows, backtest) goes through here.
"""
