"""``python -m services.safety_watchdog``: start the process (see main.py)."""
import sys

from prod.runtime.service import without_pandas
from services.safety_watchdog.main import main

without_pandas()   # no service uses pandas; pyarrow would load it
sys.exit(main())
