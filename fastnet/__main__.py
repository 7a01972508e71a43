"""``python -m fastnet``: the command line of :mod:`fastnet.cli`."""
import sys

from fastnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
