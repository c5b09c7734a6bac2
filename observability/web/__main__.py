"""``python -m observability.web`` serves the web console (see observability.web.server)."""
from observability.web.server import main

raise SystemExit(main())
