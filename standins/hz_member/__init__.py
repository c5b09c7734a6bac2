"""Embedded single-machine Hazelcast member speaking the Open Binary Client Protocol (IMap + CP)."""
