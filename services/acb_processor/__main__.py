"""``python -m services.acb_processor``: start the process (see main.py)."""
import sys

from services.acb_processor.main import main

sys.exit(main())
