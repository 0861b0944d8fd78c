"""``python -m cachelab``: the command line of :mod:`cachelab.kit.cli`."""

import sys

from .kit.cli import main

if __name__ == "__main__":
    sys.exit(main())
