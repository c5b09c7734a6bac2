"""DOLPHIN web console: a read-only browser view of the maps and the mesh, fed by entry listeners."""
