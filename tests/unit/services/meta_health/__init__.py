"""Unit tests mirroring the package of the same path."""
