"""`python -m observability.bootstrap`: migrate, seed and optionally backfill demo data, kept at its documented path.

The code lives in `observability.demo.bootstrap`.
"""

import sys

from observability.demo.bootstrap import main

if __name__ == "__main__":
    sys.exit(main())
