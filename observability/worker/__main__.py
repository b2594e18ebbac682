"""`python -m observability.worker [--once]`."""

import sys

from observability.worker.runner import main

sys.exit(main())
