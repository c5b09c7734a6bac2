"""``python -m services.scan_bridge``: start the process (see main.py)."""
import sys

from prod.runtime.service import without_pandas
from services.scan_bridge.main import main

without_pandas()   # no service uses pandas; pyarrow would load it
sys.exit(main())
