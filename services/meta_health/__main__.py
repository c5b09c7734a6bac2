"""``python -m services.meta_health``: start the process (see main.py)."""
import sys

from prod.runtime.service import without_pandas
from services.meta_health.main import main

without_pandas()   # no service uses pandas; pyarrow would load it
sys.exit(main())
