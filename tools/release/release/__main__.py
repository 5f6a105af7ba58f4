"""`python -m release`: the release tool's command line (see cli.py)."""

from release.cli import main

main()
