"""`python -m observability.simulate`: the demo traffic simulator, kept at its documented path.

The code lives in `observability.demo.simulate`.
"""

import sys

from observability.demo.simulate import main

if __name__ == "__main__":
    sys.exit(main())
