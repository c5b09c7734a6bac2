"""``python -m services.scan_bridge``: start the process (see main.py)."""
import sys

from services.scan_bridge.main import main

sys.exit(main())
