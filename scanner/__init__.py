"""The NG8 eigenvalue scanner: engine, price book, Arrow records and the scanner process."""
