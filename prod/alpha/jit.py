"""``njit`` for the engine's kernels: numba's, or the same Python function in a process that runs interpreted.

The live trader calls :func:`interpret` in its entry, before it imports the engine: it steps one bar per
scan, where numba's LLVM (~100 MB resident) buys nothing; a backtest steps millions and keeps numba. The
kernels are the same source either way; tests/unit/test_jit.py checks that both give the same numbers.
"""
from __future__ import annotations

from typing import Any, Callable

_interpreted = False
_decorated: list[str] = []


def interpret() -> None:
    """Run this process's kernels as plain Python, numba not loaded: call it in a process entry, before any
    kernel module is imported. Never call it from a library or in a test process."""
    global _interpreted
    if _decorated and not _interpreted:
        raise RuntimeError(f"prod.alpha.jit.interpret() after kernels were compiled: {', '.join(_decorated[:3])}")
    _interpreted = True


def interpreted() -> bool:
    """True when this process runs the kernels as plain Python (:func:`interpret` was called)."""
    return _interpreted


def njit(*args: Any, **options: Any) -> Any:
    """``numba.njit`` (same arguments), or the undecorated function after :func:`interpret`."""
    def wrap(func: Callable) -> Any:
        if _interpreted:
            return func
        from numba import njit as numba_njit
        _decorated.append(f"{func.__module__}.{func.__qualname__}")
        return numba_njit(**options)(func)
    if len(args) == 1 and callable(args[0]) and not options:
        return wrap(args[0])
    if args:
        raise TypeError("prod.alpha.jit.njit takes keyword options only (no signatures)")
    return wrap
