"""``python -m services.exf_fetcher``: start the process (see main.py)."""
import sys

from services.exf_fetcher.main import main

sys.exit(main())
