"""DOLPHIN importable core: alpha engine, bus contracts, venue clients, configs, backtest."""
