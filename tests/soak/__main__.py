import sys

from tests.soak.runner import main

sys.exit(main())
