"""The krunner plugin the agent loads from the entry-point group ``backendai_krunner_v10``."""

from collections.abc import Mapping
from typing import Any, Final

from ai.backend.krunner.manifest import KrunnerManifest, load_manifest

PACKAGE: Final = __name__.rpartition(".")[0]


async def init(config: Mapping[str, Any]) -> None:
    """Called by the agent before it reads the package's data files; there is nothing to set up."""


def manifest() -> KrunnerManifest:
    """The distros, Python and volume versions and environment archives this package provides."""
    return load_manifest(PACKAGE, libc="gnu")
