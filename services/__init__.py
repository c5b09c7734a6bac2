"""The supervised services of the mesh: one package per process."""
