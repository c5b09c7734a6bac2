"""``python -m observability`` runs the live observability terminal (same as ``python -m observability.tui``)."""
from observability.tui import main

raise SystemExit(main())
