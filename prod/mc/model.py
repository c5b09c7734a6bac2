"""The forewarner model of the configuration envelope: fit, assess a config, save and load the model file.

Design notes: ``docs/design/prod.mc.md``.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import math
import platform
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

FORMAT = "dolphin-mc-forewarner"
FORMAT_VERSION = 1
FEATURES: tuple[str, ...] = ("max_leverage", "fraction", "fixed_tp_pct", "max_hold_bars",
                             "vel_div_threshold", "vel_div_extreme")
CATASTROPHIC_DD = 0.20
DD_FLOOR = 1e-3            # log(max(dd, DD_FLOOR)): a window without a drawdown is not −inf
MIN_ENVELOPE_SAMPLES = 8
ENVELOPE_QUANTILE = 0.95
LIBRARIES = ("scikit-learn", "numpy", "scipy", "joblib")
_META, _BLOB = "meta.json", "model.joblib"


class ModelError(RuntimeError):
    """A model file cannot be used; the message names the file and why."""


class ModelCorruptError(ModelError):
    """The model file is unreadable, truncated or not a forewarner model."""


class ModelConfigError(ModelError):
    """The model was trained for another config (config hash differs)."""


class ModelVersionError(ModelError):
    """The model was written by newer library versions than the installed ones."""


@dataclass(frozen=True)
class McReport:
    """What ``assess_config_dict`` returns (the engine's §12 port reads the first two)."""
    catastrophic_probability: float
    envelope_score: float
    predicted_max_dd: float


def library_versions() -> dict[str, str]:
    """Return the installed versions of the libraries a model file depends on."""
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        out[lib] = importlib.metadata.version(lib)
    return out


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def config_features(cfg: Mapping[str, Any], base: Mapping[str, float]) -> np.ndarray:
    """Return the feature row of ``cfg`` (keys missing from it take the ``base`` config's values)."""
    row = []
    for k in FEATURES:
        v = cfg.get(k, base[k])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ValueError(f"config value {k}={v!r}: expected a finite number")
        row.append(float(v))
    return np.asarray([row], dtype=np.float64)


class EnvelopeModel:
    """The fitted estimators and the metadata of one model file."""

    def __init__(self, meta: dict[str, Any], est: dict[str, Any]):
        self.meta = meta
        self._est = est

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(cls, X: np.ndarray, max_dd: np.ndarray, roi: np.ndarray, meta: dict[str, Any],
            folds: int = 5, seed: int = 7) -> "EnvelopeModel":
        """Fit on sample configs ``X`` (n × len(FEATURES)), their max drawdown (fraction) and ROI (fraction)."""
        from sklearn.covariance import LedoitWolf
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import KFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=np.float64)
        max_dd, roi = np.asarray(max_dd, dtype=np.float64), np.asarray(roi, dtype=np.float64)
        n = X.shape[0]
        if X.ndim != 2 or X.shape[1] != len(FEATURES) or n < 4 or max_dd.shape != (n,) or roi.shape != (n,):
            raise ValueError(f"need >= 4 samples of {len(FEATURES)} features with one drawdown and ROI each")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(max_dd)) and np.all(np.isfinite(roi))):
            raise ValueError("training samples contain non-finite values")
        y = np.log(np.maximum(max_dd, DD_FLOOR))
        reg = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        k = max(2, min(folds, n))
        oof = cross_val_predict(reg, X, y, cv=KFold(k, shuffle=True, random_state=seed))
        resid = y - oof
        sigma = float(max(np.std(resid, ddof=1), 1e-3))
        reg.fit(X, y)
        cat = max_dd > CATASTROPHIC_DD
        p_oof = np.array([_normal_sf((math.log(CATASTROPHIC_DD) - m) / sigma) for m in oof])
        good, basis = (~cat) & (roi >= 0), "no catastrophe and roi >= 0"
        if good.sum() < MIN_ENVELOPE_SAMPLES:
            good, basis = ~cat, "no catastrophe"
        if good.sum() < MIN_ENVELOPE_SAMPLES:
            good, basis = np.ones(n, dtype=bool), "all samples"
        scaler = StandardScaler().fit(X[good])
        Z = scaler.transform(X[good])
        cov = LedoitWolf().fit(Z)
        d = np.sqrt(cov.mahalanobis(Z))
        d95 = float(max(np.quantile(d, ENVELOPE_QUANTILE), 1e-6))
        oos = {
            "folds": k,
            "log_dd_rmse": float(np.sqrt(np.mean(resid ** 2))),
            "dd_mae_pct": float(np.mean(np.abs(np.exp(oof) - np.maximum(max_dd, DD_FLOOR))) * 100.0),
            "catastrophe_brier": float(np.mean((p_oof - cat.astype(float)) ** 2)),
        }
        meta = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "features": list(FEATURES),
                "libraries": library_versions(), "n_samples": n, "n_catastrophic": int(cat.sum()),
                "envelope_basis": basis, "envelope_samples": int(good.sum()), "residual_sigma": sigma,
                "envelope_d95": d95, "out_of_sample": oos}
        return cls(meta, {"dd": reg, "scaler": scaler, "cov": cov})

    # ------------------------------------------------------------------ assess
    @property
    def config_hash(self) -> str:
        return str(self.meta["config_hash"])

    @property
    def base_config(self) -> dict[str, float]:
        return dict(self.meta["base_config"])

    def assess_config_dict(self, cfg: Mapping[str, Any]) -> McReport:
        """Return P(max DD > 20 %) and the envelope score of ``cfg`` (the engine's §12 port)."""
        x = config_features(cfg, self.meta["base_config"])
        mu = float(self._est["dd"].predict(x)[0])
        p = _normal_sf((math.log(CATASTROPHIC_DD) - mu) / float(self.meta["residual_sigma"]))
        z = self._est["scaler"].transform(x)
        d = math.sqrt(float(self._est["cov"].mahalanobis(z)[0]))
        env = 1.0 - d / float(self.meta["envelope_d95"])
        return McReport(float(p), float(env), float(math.exp(mu)))

    # ------------------------------------------------------------------ file
    def save(self, path: str | Path) -> Path:
        """Write the model file (zip: meta.json + model.joblib) atomically; return its path."""
        import joblib
        path = Path(path)
        buf = io.BytesIO()
        joblib.dump(self._est, buf)
        blob = buf.getvalue()
        meta = {**self.meta, "blob_sha256": hashlib.sha256(blob).hexdigest()}
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_META, json.dumps(meta, indent=2, sort_keys=True))
            z.writestr(_BLOB, blob)
        tmp.replace(path)
        self.meta = meta
        return path

    @classmethod
    def load(cls, path: str | Path, config_hash: str | None = None) -> "EnvelopeModel":
        """Read a model file; raise a :class:`ModelError` subclass naming the file and the reason."""
        path = Path(path)
        try:
            with zipfile.ZipFile(path) as z:
                meta = json.loads(z.read(_META).decode("utf-8"))
                blob = z.read(_BLOB)
        except FileNotFoundError:
            raise
        except (zipfile.BadZipFile, KeyError, OSError, UnicodeDecodeError, ValueError, EOFError) as exc:
            raise ModelCorruptError(f"{path}: corrupt forewarner model ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ModelCorruptError(f"{path}: not a {FORMAT} model file")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelVersionError(f"{path}: model format {meta.get('format_version')!r}, "
                                    f"this code reads {FORMAT_VERSION}")
        check_versions(path, meta.get("libraries"))
        if config_hash is not None and meta.get("config_hash") != config_hash:
            raise ModelConfigError(f"{path}: trained for config hash {meta.get('config_hash')!r}, "
                                   f"the config assessed has {config_hash!r}")
        if hashlib.sha256(blob).hexdigest() != meta.get("blob_sha256"):
            raise ModelCorruptError(f"{path}: corrupt forewarner model (estimator checksum mismatch)")
        try:
            import joblib
            est = joblib.load(io.BytesIO(blob))
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a corrupt file
            raise ModelCorruptError(f"{path}: corrupt forewarner model ({type(exc).__name__}: {exc})") from None
        if not isinstance(est, dict) or set(est) != {"dd", "scaler", "cov"}:
            raise ModelCorruptError(f"{path}: corrupt forewarner model (unexpected estimator set)")
        for k in ("base_config", "residual_sigma", "envelope_d95", "config_hash"):
            if k not in meta:
                raise ModelCorruptError(f"{path}: corrupt forewarner model (meta.json lacks {k!r})")
        return cls(meta, est)


def check_versions(path: Path, saved: Any) -> None:
    """Raise :class:`ModelVersionError` when ``saved`` names a library newer than the installed one."""
    from packaging.version import InvalidVersion, Version
    if not isinstance(saved, dict):
        raise ModelCorruptError(f"{path}: corrupt forewarner model (no library versions)")
    have = library_versions()
    newer = []
    for lib in LIBRARIES:
        if lib not in saved:
            raise ModelCorruptError(f"{path}: corrupt forewarner model (no {lib} version)")
        try:
            if Version(str(saved[lib])) > Version(have[lib]):
                newer.append(f"{lib} {saved[lib]} > installed {have[lib]}")
        except InvalidVersion:
            raise ModelCorruptError(f"{path}: corrupt forewarner model ({lib} version {saved[lib]!r})") from None
    if newer:
        raise ModelVersionError(f"{path}: written by newer libraries ({'; '.join(newer)}); "
                                "upgrade them or retrain the model")
