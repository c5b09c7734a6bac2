"""Hazelcast bus: map names and payload schemas (``maps``), client factory and listeners (``client``)."""
