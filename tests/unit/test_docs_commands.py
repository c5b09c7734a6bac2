"""Every ``python -m …`` command named in README.md and docs/*.md answers ``--help``.

Each distinct command (module plus the subcommand words the docs give it) runs as
``.venv/bin/python -m <module> [subcommand] --help`` from the repo root, two at a time: it must exit 0
and print a usage line (naming ``python -m <module>`` for the project's own modules). ``--help`` must
not start anything: the runs point the data and run-log directories at a folder that must still not
exist afterwards, and the bus, venue and Prefect URLs at a port nobody listens on.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
PROJECT_PACKAGES = {"observability", "ops", "prod", "scanner", "services", "standins", "tests"}

# `python -m pkg.mod sub` / `python -m pkg.mod a | b \| c`: the module (not a `services.<name>` template),
# then lowercase words that are subcommands (a word followed by `/`, `.`, `=` or `:` is a path or value)
COMMAND = re.compile(r"python3? -m ([A-Za-z_][\w.]*\w)(?![\w.<])"
                     r"((?:[ \t]*(?:\\?\|)?[ \t]*[a-z][a-z0-9-]*(?![\w/.=:-]))*)")


def commands_in(text: str) -> set[tuple[str, ...]]:
    """Return the ``(module, *subcommand words)`` named in ``text``; ``a | b`` alternatives apart."""
    out = set()
    for m in COMMAND.finditer(text):
        for alt in m.group(2).replace("\\|", "|").split("|"):
            out.add((m.group(1), *alt.split()))
    return out


def documented_commands() -> dict[tuple[str, ...], str]:
    """Every command of README.md and docs/*.md, with the first file naming it."""
    found: dict[tuple[str, ...], str] = {}
    for doc in DOCS:
        for cmd in sorted(commands_in(doc.read_text())):
            found.setdefault(cmd, doc.relative_to(ROOT).as_posix())
    return found


def test_command_extraction_takes_modules_subcommands_and_alternatives_but_not_paths_or_templates():
    text = ("`python -m prod.execution kill \\| clear-kill \\| status`, run `python -m services.<name>`;\n"
            ".venv/bin/python -m scanner.import_klines tests/fixtures/klines --out /tmp/k\n"
            "python -m ops.mesh up --env K=V      # comment words\n"
            "python -m prefect worker start --pool dolphin; python3 -m pytest -q tests/unit")
    assert commands_in(text) == {("prod.execution", "kill"), ("prod.execution", "clear-kill"),
                                 ("prod.execution", "status"), ("scanner.import_klines",),
                                 ("ops.mesh", "up"), ("prefect", "worker", "start"), ("pytest",)}


def _help(cmd: tuple[str, ...], env: dict[str, str]) -> tuple[tuple[str, ...], int | str, str]:
    try:
        p = subprocess.run([sys.executable, "-m", *cmd, "--help"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=180, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return cmd, "timeout (did --help start something?)", ""
    return cmd, p.returncode, p.stdout + p.stderr


def test_every_documented_python_m_command_answers_help_without_starting_anything(tmp_path):
    docs = documented_commands()
    assert len(docs) >= 30 and {("ops.mesh", "up"), ("scanner.import_klines",)} <= set(docs)
    missing = [f"{' '.join(c)} ({where}): no module {c[0]}" for c, where in docs.items()
               if importlib.util.find_spec(c[0]) is None]
    assert not missing, "docs name modules that do not exist:\n" + "\n".join(missing)

    untouched = tmp_path / "untouched"
    dead = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "DOLPHIN_DATA_DIR": str(untouched / "data"), "DOLPHIN_RUN_LOGS": str(untouched / "logs"),
           "DOLPHIN_HZ_MEMBERS": dead, "DOLPHIN_VENUE_REST": f"http://{dead}", "DOLPHIN_VENUE_WS": f"ws://{dead}",
           "PREFECT_API_URL": f"http://{dead}/api", "PREFECT_HOME": str(tmp_path / "prefect_home"),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: _help(c, env), sorted(docs)))

    bad = []
    for cmd, rc, out in results:
        name = " ".join(cmd)
        usage = next((line for line in out.splitlines() if line.lower().startswith("usage:")), None)
        if rc != 0 or usage is None:
            bad.append(f"python -m {name} --help ({docs[cmd]}): exit {rc}, usage line {usage!r}\n{out[-600:]}")
        elif cmd[0].split(".")[0] in PROJECT_PACKAGES and f"python -m {cmd[0]}" not in usage:
            bad.append(f"python -m {name} --help ({docs[cmd]}): usage does not name the command: {usage!r}")
    assert not bad, "\n\n".join(bad)
    assert not untouched.exists(), f"--help wrote {sorted(p.name for p in untouched.rglob('*'))}"
