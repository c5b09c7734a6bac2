"""``python -m services.event_trader``: start the process (see main.py)."""
import sys

from services.event_trader.main import main

sys.exit(main())
