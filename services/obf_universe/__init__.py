"""obf_universe: order-book features for every TRADING perpetual onto the feature shards."""
