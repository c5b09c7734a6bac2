"""``python -m services.safety_watchdog``: start the process (see main.py)."""
import sys

from services.safety_watchdog.main import main

sys.exit(main())
