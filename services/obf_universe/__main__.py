"""``python -m services.obf_universe``: start the process (see main.py)."""
import sys

from services.obf_universe.main import main

sys.exit(main())
