"""meta_health: Meta Health Service v3 (scores the mesh, revives stopped data services)."""
