"""A service process runs without pandas: pyarrow no longer loads it, and writes the same files."""
from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO_ROOT

# a service's Parquet and Arrow IPC writes and reads (the exf/obf history, the scan archive, the recording)
PROBE = """
import io, sys
{block}
import pyarrow as pa, pyarrow.ipc as ipc, pyarrow.parquet as pq
t = pa.table({{"ts": [1.5, 2.5], "s": ["ok", None], "n": pa.array([1, 2], pa.int64()),
               "l": pa.array([[1.0], [2.0, 3.0]], pa.list_(pa.float64()))}})
buf = io.BytesIO(); pq.write_table(t, buf)
back = pq.read_table(io.BytesIO(buf.getvalue()))
sink = io.BytesIO(); w = ipc.new_file(sink, t.schema); w.write_table(t); w.close()
assert back.equals(t) and ipc.open_file(io.BytesIO(sink.getvalue())).read_all().to_pylist() == t.to_pylist()
sys.stdout.write(repr(("pandas" in sys.modules, buf.getvalue().hex())))
"""


def _probe(block: str) -> tuple[bool, str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(block=block)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout)  # noqa: S307 - our own probe's repr


def test_a_process_without_pandas_writes_the_same_parquet_and_never_loads_pandas():
    loaded, plain = _probe("")
    assert loaded                                     # pyarrow loads pandas when it may: what the guard removes
    blocked, guarded = _probe("from prod.runtime.service import without_pandas; without_pandas()")
    assert not blocked
    assert guarded == plain


def test_an_import_of_pandas_fails_as_if_not_installed():
    out = subprocess.run([sys.executable, "-c", "from prod.runtime.service import without_pandas; without_pandas()\n"
                          "import pandas"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "ModuleNotFoundError" in out.stderr and "without pandas" in out.stderr
