"""``python -m services.acb_processor``: start the process (see main.py)."""
import sys

from prod.runtime.service import without_pandas
from services.acb_processor.main import main

without_pandas()   # no service uses pandas; pyarrow would load it
sys.exit(main())
