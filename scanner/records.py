"""Turn an engine result into one Arrow scan record (the row :mod:`prod.scans.arrow_io` writes)."""
from __future__ import annotations

from prod.scans import arrow_io
from scanner.engine import WINDOWS, ScanResult


def build_record(scan_number: int, res: ScanResult) -> dict:
    """Turn an engine result into the 27-field Arrow record (JSON columns still as Python objects)."""
    rec: dict = {"scan_number": scan_number, "timestamp_ns": res.timestamp_ns,
                 "timestamp_iso": arrow_io.iso_from_ns(res.timestamp_ns)}
    for w in WINDOWS:
        r = res.windows[w]
        rec[f"w{w}_lambda_max"] = r.lambda_max
        rec[f"w{w}_velocity"] = r.velocity
        rec[f"w{w}_eigengap"] = r.eigengap
        rec[f"w{w}_instability"] = r.instability
        rec[f"w{w}_warm"] = r.lambda_max is not None
    rec.update(vel_div=res.vel_div, regime_signal=res.regime_signal,
               instability_composite=res.instability_composite, n_assets=res.n_assets,
               assets=list(res.assets), prices=list(res.prices),
               loadings={f"w{w}": res.windows[w].loadings for w in WINDOWS},
               schema_version=arrow_io.SCHEMA_VERSION,
               gap_s=res.gap_s, carried=res.carried, gap_hold=res.gap_hold)
    return rec
