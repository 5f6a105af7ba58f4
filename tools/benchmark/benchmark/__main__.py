"""`python -m benchmark`, and what `./pants run tools/benchmark:bench` runs (see cli.py)."""

import sys

from benchmark.cli import main

sys.exit(main())
