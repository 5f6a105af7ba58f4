"""The one exception of the services package whose message the user sees."""

from __future__ import annotations


class ServiceStartError(Exception):
    """A start that cannot succeed; ``str(e)`` is the ``error`` of the ``failed`` reply."""
