"""Helpers for code running inside Backend.AI sessions."""

from .package import PipInstallError, install

__all__ = ["PipInstallError", "install"]
