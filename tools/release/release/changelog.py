"""Folding news fragments into CHANGELOG.md with towncrier, configured by a file this tool owns."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from release.errors import ReleaseError
from release.proc import python_module, run_captured
from release.versioning import CalVer

_CONFIG = resources.files("release") / "towncrier.toml"


def build_changelog(root: Path, version: CalVer, *, draft: bool) -> str:
    """Renders the fragments under `version`'s heading; unless `draft`, writes and stages them.

    The heading uses the tag as written (24.03.4rc1), matching the git tag.
    """
    if not draft:
        ensure_not_folded(root / "CHANGELOG.md", version)
    towncrier = python_module("towncrier")
    with resources.as_file(_CONFIG) as config_path:
        command = [
            *towncrier.argv,
            "build",
            "--config",
            str(config_path),
            "--dir",
            str(root),
            "--version",
            str(version),
            "--draft" if draft else "--yes",
        ]
        return run_captured(command, root, "towncrier", env=towncrier.env)


def ensure_not_folded(changelog: Path, version: CalVer) -> None:
    """towncrier only notices a repeated version when the date matches too."""
    heading = _heading_prefix(version)
    text = changelog.read_text(encoding="utf-8") if changelog.is_file() else ""
    if any(line.startswith(heading) for line in text.splitlines()):
        raise ReleaseError(f"{changelog.name} already has a section for {version}")


def _heading_prefix(version: CalVer) -> str:
    """A section heading for `version` up to its date: `## 24.03.4rc1 (` (the title_format)."""
    towncrier = tomllib.loads(_CONFIG.read_text(encoding="utf-8"))["tool"]["towncrier"]
    title_format = str(towncrier["title_format"])
    return title_format.partition("{project_date}")[0].format(version=version)
