"""mc_forewarner: assess the active config with the prod/mc model (or its fallback) → mc_forewarner_latest (sole writer)."""
