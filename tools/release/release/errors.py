"""The one exception type the CLI turns into a single `error: ...` line."""


class ReleaseError(Exception):
    """A problem worded for the release manager; the CLI prints it as one line and exits 1."""
