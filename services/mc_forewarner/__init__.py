"""mc_forewarner: bootstrap assessment of the active config → mc_forewarner_latest."""
