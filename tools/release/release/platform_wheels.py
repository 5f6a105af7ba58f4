"""The krunner platform wheels tools/krunner/inputs.toml declares, which of them a release lacks,
and why the build skipped them.

The krunner builder prints `skipped <platform tag> (<distro key>): <why>` for each platform whose
pinned inputs it cannot fetch (tools/krunner/cli.py); Pants logs it as `krunner: skipped ...`.
`tag` reads those lines from the package command's output and writes them into the annotated
tag's message, where `verify` and `publish` find them again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name

from release.errors import ReleaseError
from tools.krunner.pins import ARCHES, PinError, load_inputs
from tools.krunner.platform_wheel import wheel_filename

FLAG = "--allow-missing-platform-wheels"
NO_REASON = "not built, and no skip reason was recorded (the build's output names it)"
_SKIPPED = re.compile(r"(?:^|\s)skipped (?P<platform>\S+) \((?P<distro>[^)\s]+)\): (?P<why>.+)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (distro key, platform tag) -> the build's reason for skipping it
SkipReasons = Mapping[tuple[str, str], str]


@dataclass(frozen=True)
class PlatformWheel:
    """One platform wheel a krunner distribution is declared to ship."""

    filename: str
    project: NormalizedName
    distro: str
    platform: str
    arch: str


@dataclass(frozen=True)
class MissingWheel:
    wheel: PlatformWheel
    reason: str

    def line(self) -> str:
        return f"{self.wheel.filename} ({self.wheel.distro}, {self.wheel.arch}): {self.reason}"


@dataclass(frozen=True)
class PlatformWheels:
    """How `verify` treats the declared platform wheels: where they are declared, whether a
    release may go without those that were not built, and the build's reasons for skipping."""

    inputs_file: Path
    allow_missing: bool = False
    reasons: SkipReasons | None = None


def declared_wheels(
    inputs_file: Path, canonical: str, projects: Iterable[NormalizedName]
) -> list[PlatformWheel]:
    """The platform wheels of the workspace's krunner distributions; none without the file."""
    if not inputs_file.is_file():
        return []
    try:
        inputs = load_inputs(inputs_file)
    except PinError as error:
        raise ReleaseError(str(error)) from None
    wanted = set(projects)
    declared = []
    for key, distro in sorted(inputs.distros.items()):
        project = canonicalize_name("backend.ai-krunner-" + distro.package.replace("_", "-"))
        if project not in wanted:
            continue
        for arch in ARCHES:
            platform = distro.platform_tag(arch)
            filename = wheel_filename(project, canonical, platform)
            declared.append(PlatformWheel(filename, project, key, platform, arch))
    return declared


def missing_wheels(
    dist_dir: Path, declared: Iterable[PlatformWheel], reasons: SkipReasons | None
) -> list[MissingWheel]:
    present = {path.name for path in dist_dir.glob("*.whl")}
    return [
        MissingWheel(wheel, (reasons or {}).get((wheel.distro, wheel.platform), NO_REASON))
        for wheel in declared
        if wheel.filename not in present
    ]


def skip_reasons(lines: Iterable[str]) -> dict[tuple[str, str], str]:
    """The builder's `skipped <platform> (<distro>): <why>` lines, from any output."""
    reasons = {}
    for raw in lines:
        match = _SKIPPED.search(_ANSI.sub("", raw).rstrip())
        if match:
            reasons[(match["distro"], match["platform"])] = match["why"].strip()
    return reasons


def skip_lines(missing: Iterable[MissingWheel]) -> list[str]:
    """The skipped wheels in the builder's own format, for the release tag's message."""
    return [f"skipped {m.wheel.platform} ({m.wheel.distro}): {m.reason}" for m in missing]


def refusal(missing: Iterable[MissingWheel]) -> str:
    names = ", ".join(m.wheel.filename for m in missing)
    return f"krunner platform wheels missing: {names}; {FLAG} releases without them"
