"""Operator tools: commands a person runs (the mesh CLI), not supervised services."""
