"""`python -m observability.users`: user administration, kept at its documented path.

The code lives in `observability.auth.cli`.
"""

import sys

from observability.auth.cli import main

if __name__ == "__main__":
    sys.exit(main())
