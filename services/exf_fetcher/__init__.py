"""exf_fetcher: external factors (funding, DVOL, fear & greed, taker ratio) onto the bus."""
