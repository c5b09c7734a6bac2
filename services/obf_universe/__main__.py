"""``python -m services.obf_universe``: start the process (see main.py)."""
import sys

from prod.runtime.service import without_pandas
from services.obf_universe.main import main

without_pandas()   # no service uses pandas; pyarrow would load it
sys.exit(main())
