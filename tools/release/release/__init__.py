"""The release tool of the Backend.AI kernel-runner monorepo (see cli.py)."""
