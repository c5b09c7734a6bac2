"""``python -m services.event_trader``: start the process (see main.py)."""
import sys

from prod.alpha import jit
from prod.runtime.service import without_pandas

jit.interpret()    # one bar per scan: the engine's kernels as plain Python, no numba/LLVM in this process
without_pandas()   # no service uses pandas; pyarrow would load it

from services.event_trader.main import main  # noqa: E402  (after interpret(): the engine's kernels follow it)

sys.exit(main())
