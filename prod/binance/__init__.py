"""The Binance USDT-M adapter's shared parts: request signing and the one HTTP client of market data and execution."""
