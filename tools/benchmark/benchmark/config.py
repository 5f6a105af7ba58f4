"""The benchmark's settings, limits and progress messages."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median

STREAM_BYTES = 64 * 2**20
STREAM_LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
STREAM_CMD = f"yes {STREAM_LINE} | head -c {STREAM_BYTES}"
START_TIMEOUT = 60.0
RUN_TIMEOUT = 60.0
STREAM_TIMEOUT = 600.0


class BenchError(Exception):
    """A measurement that could not be taken; reported in the table, never fatal."""


@dataclass
class Config:
    iterations: int
    status_rounds: int
    stream_runs: int
    starts: int
    skip_upstream: bool
    new_python: str
    new_python_explicit: bool
    base_python: str
    log_dir: Path


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def notice(message: str) -> None:
    print(f"*** {message}", file=sys.stderr, flush=True)


def median_or_none(samples: Sequence[float]) -> float | None:
    """The median, or None when no sample was taken (the table says n/a)."""
    return median(samples) if samples else None
