"""``python -m fastnet.bench``: the end-to-end benchmark table."""
import sys

from fastnet.bench.suite import main

sys.exit(main())
