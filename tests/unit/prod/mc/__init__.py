"""Unit tests of prod/mc."""
