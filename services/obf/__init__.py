"""Helpers of the obf_universe service: pure feature math (features) and the map-write breaker."""
