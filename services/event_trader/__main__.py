"""``python -m services.event_trader``: start the process (see main.py)."""
import os
import sys

from prod.alpha import jit
from prod.runtime.service import without_pandas

# DOLPHIN_EVENT_TRADER_KERNELS: `compiled` (default) loads numba (an entry decision's asset ranking ~0.2 ms);
# `interpreted` runs the engine's kernels as plain Python, without numba/LLVM (~125 MB less resident, but
# ~15-20 ms per entry decision, above the 10 ms scan -> decision limit). Same source and same numbers either
# way (tests/unit/prod/alpha/test_jit.py).
_kernels = os.environ.get("DOLPHIN_EVENT_TRADER_KERNELS", "compiled")
if _kernels not in ("interpreted", "compiled"):
    sys.exit(f"DOLPHIN_EVENT_TRADER_KERNELS={_kernels!r}: expected interpreted or compiled")
if _kernels == "interpreted":
    jit.interpret()
without_pandas()   # no service uses pandas; pyarrow would load it

from services.event_trader.main import main  # noqa: E402  (after interpret(): the engine's kernels follow it)

sys.exit(main())
