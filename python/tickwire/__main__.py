"""``python -m tickwire``: the same command line as the ``tickwire`` script."""

import sys

from tickwire.cli import main

if __name__ == "__main__":
    sys.exit(main())
