"""The layers of the house, read from the source: every import (top-level and inside functions) obeys them.

``prod/`` is the ground floor; services, the scanner, observability and the operator tools (``ops/``) sit on it;
``standins/`` are reached only from ``ops/`` and the tests. See docs/layers.md.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("prod", "services", "scanner", "observability", "ops", "standins")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        if (ROOT / pkg).is_dir():
            for p in sorted((ROOT / pkg).rglob("*.py")):
                if ".venv" not in p.parts and "node_modules" not in p.parts:
                    out[_module_name(p)] = p
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The longest project module that ``name`` names (a module, or a name inside one); None if not ours."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def _imports(mod: str, path: Path) -> list[tuple[str, int]]:
    """Every imported name of ``mod`` (absolute, with ``from a import b`` as ``a.b``) and its line."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names if a.name != "*"]
            subs = [n for n in names if n in MODULES]     # ``from pkg import module``: the module, not pkg
            out += [(n, node.lineno) for n in subs]
            if len(subs) < len(names) or not names:
                out.append((base, node.lineno))
    return out


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(project edges, external top-level names) per module."""
    edges: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for mod, path in MODULES.items():
        e, x = set(), set()
        for name, _ in _imports(mod, path):
            target = _resolve(name)
            if target is None:
                x.add(name.split(".")[0])
            elif target != mod:
                e.add(target)
        edges[mod], external[mod] = e, x
    return edges, external


EDGES, EXTERNAL = _graph()


def _within(mod: str, pkg: str) -> bool:
    return mod == pkg or mod.startswith(pkg + ".")


# observability reads bus payloads only: prod.bus (maps, payloads) through prod.runtime's Bus, told where the cluster
# is by prod.settings, and serves its own prod.metrics endpoint; nothing else of prod (no trading, alpha, backtest)
OBS_MAY_USE = ("prod.bus", "prod.runtime", "prod.settings", "prod.metrics")


def _violations() -> set[tuple[str, str]]:
    bad: set[tuple[str, str]] = set()
    for mod, targets in EDGES.items():
        for t in targets:
            if _within(mod, "prod") and any(_within(t, p) for p in ("services", "scanner", "observability", "ops",
                                                                    "standins")):
                bad.add((mod, t))
            if _within(mod, "prod.trading") and (_within(t, "prod.runtime") or _within(t, "prod.flows")):
                bad.add((mod, t))
            if _within(mod, "prod.alpha") and _within(t, "prod.trading"):
                bad.add((mod, t))
            if (_within(mod, "services") and _within(t, "services") and mod.count(".") >= 1 and t.count(".") >= 1
                    and mod.split(".")[1] != t.split(".")[1]):
                bad.add((mod, t))
            if _within(mod, "observability") and _within(t, "prod") and not any(_within(t, a) for a in OBS_MAY_USE):
                bad.add((mod, t))
            if _within(mod, "standins") is False and _within(t, "standins") and not _within(mod, "ops"):
                bad.add((mod, t))
        if _within(mod, "prod.trading") and "hazelcast" in EXTERNAL[mod]:
            bad.add((mod, "hazelcast"))
    return bad


# Known crossings (none left; a new one fails the test, as does a line here that no longer applies).
PENDING: set[tuple[str, str]] = set()


def test_no_layer_is_crossed_beyond_the_pending_list():
    found = _violations()
    new = sorted(found - PENDING)
    gone = sorted(PENDING - found)
    assert not new, "imports that cross a layer (importer, imported):\n" + "\n".join(map(str, new))
    assert not gone, "fixed, delete from PENDING in tests/unit/test_layers.py:\n" + "\n".join(map(str, gone))


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in EDGES.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(EDGES):
        if v not in index:
            visit(v)
    return out


def _is_package_and_its_own_module(comp: list[str]) -> bool:
    """A package whose ``__init__`` re-exports its modules, which import each other through the package name,
    is one unit (Python loads it as one); only a circle that leaves the package counts."""
    pkgs = {c for c in comp if (MODULES[c].name == "__init__.py")}
    return any(all(_within(c, p) for c in comp) for p in pkgs)


def test_no_import_cycle_among_project_modules():
    cycles = [c for c in _cycles() if not _is_package_and_its_own_module(c)]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_imports_inside_functions():
    # the scanner imports its universe scan inside a function: the walker must see it
    assert "scanner.universe" in EDGES["scanner.ng8_scanner"]
    assert _resolve("prod.scans.arrow_io.read_scan") == "prod.scans.arrow_io"


@pytest.mark.parametrize("mod", ["prod", "services", "scanner", "observability"])
def test_every_package_is_walked(mod):
    assert any(_within(m, mod) for m in MODULES)


# ── module heads ─────────────────────────────────────────────────────────────────────────────
HEAD_MAX_LINES = 10
ISSUE_NUMBER = re.compile(r"\bissues?\s+#?\d+|(?<![\w{:&/#'\"])#\d{1,3}\b")


def _head_findings() -> set[tuple[str, str]]:
    """(file, "head") for a missing or over-long module docstring; (file, "issue") for an issue number."""
    out: set[tuple[str, str]] = set()
    for path in MODULES.values():
        src = path.read_text()
        rel = path.relative_to(ROOT).as_posix()
        doc = ast.get_docstring(ast.parse(src), clean=False)
        if doc is None or not doc.strip() or len(doc.strip().splitlines()) > HEAD_MAX_LINES:
            out.add((rel, "head"))
        if ISSUE_NUMBER.search(src):
            out.add((rel, "issue"))
    return out


# Known findings (none left; a new one fails the test, as does a line here that no longer applies).
PENDING_HEADS: set[tuple[str, str]] = set()


def test_module_heads_are_short_and_name_no_issue():
    found = _head_findings()
    new = sorted(found - PENDING_HEADS)
    gone = sorted(PENDING_HEADS - found)
    assert not new, ("module docstring missing or over ten lines ('head'), or an issue number ('issue'):\n"
                     + "\n".join(map(str, new)))
    assert not gone, "fixed, delete from PENDING_HEADS in tests/unit/test_layers.py:\n" + "\n".join(map(str, gone))
