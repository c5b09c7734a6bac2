"""Real Hazelcast members (the reference the embedded member is tested against), started without Docker."""
