"""The MC-forewarner's report classified by §12's thresholds: 'OK' | 'ORANGE' | 'RED'.

Kept apart from the engine so a process that only classifies reports (the MC-forewarner service) does
not load numba.
"""
from __future__ import annotations

import math

MC_STATUSES = ("OK", "ORANGE", "RED")


def classify_mc(catastrophic_probability: float, envelope_score: float) -> str:
    """Return 'RED' | 'ORANGE' | 'OK' for an MC-forewarner report (§12)."""
    if not (math.isfinite(catastrophic_probability) and math.isfinite(envelope_score)):
        return "RED"
    if catastrophic_probability > 0.25 or envelope_score < -1.0:
        return "RED"
    if envelope_score < 0 or catastrophic_probability > 0.10:
        return "ORANGE"
    return "OK"
