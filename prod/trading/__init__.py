"""The trader as a library: decision core, accounts, journal, recording and replay (no bus, no Hazelcast)."""
