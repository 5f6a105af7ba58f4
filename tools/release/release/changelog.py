"""Folding news fragments into CHANGELOG.md with towncrier, configured by a file this tool owns."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from release.errors import ReleaseError
from release.proc import python_module, python_module_env, run_captured
from release.versioning import CalVer


def build_changelog(root: Path, version: CalVer, *, draft: bool) -> str:
    """Renders the fragments under `version`'s heading; unless `draft`, writes and stages them.

    The heading uses the tag as written (24.03.4rc1), matching the git tag.
    """
    if not draft:
        _ensure_not_folded(root / "CHANGELOG.md", version)
    config = resources.files("release") / "towncrier.toml"
    with resources.as_file(config) as config_path:
        command = [
            *python_module("towncrier"),
            "build",
            "--config",
            str(config_path),
            "--dir",
            str(root),
            "--version",
            str(version),
            "--draft" if draft else "--yes",
        ]
        return run_captured(command, root, "towncrier", env=python_module_env())


def _ensure_not_folded(changelog: Path, version: CalVer) -> None:
    """towncrier only notices a repeated version when the date matches too."""
    # Matches title_format in towncrier.toml.
    heading = re.compile(rf"^## {re.escape(str(version))} \(", re.MULTILINE)
    if changelog.is_file() and heading.search(changelog.read_text(encoding="utf-8")):
        raise ReleaseError(f"{changelog.name} already has a section for {version}")
