"""fastnet: fast, reproducible CPU training of dense neural networks."""
from fastnet._version import __version__
