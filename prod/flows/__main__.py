"""``python -m prod.flows register|list|workers``: DOLPHIN's deployments on the Prefect server."""
import sys

from prod.flows.deploy import main

sys.exit(main())
