"""Helpers of the event trader: trade journal + audit chain, single-instance lock, paper execution."""
