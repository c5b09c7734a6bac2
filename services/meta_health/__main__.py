"""``python -m services.meta_health``: start the process (see main.py)."""
import sys

from services.meta_health.main import main

sys.exit(main())
