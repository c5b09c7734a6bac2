"""``python -m services.mc_forewarner``: start the process (see main.py)."""
import sys

from services.mc_forewarner.main import main

sys.exit(main())
