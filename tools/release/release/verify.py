"""Checks a dist directory holds exactly one correct release of every workspace distribution.

Each check returns problem lines, one per problem, worded for the release manager.
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import sys_tags
from packaging.utils import NormalizedName, canonicalize_name

from release.artifacts import (
    Artifact,
    Contents,
    list_artifacts,
    parse_artifact,
    read_contents,
    read_metadata,
)
from release.builds import package
from release.errors import ReleaseError
from release.fileio import sha256_file
from release.installcheck import check_install
from release.platform_wheels import (
    MissingWheel,
    PlatformWheels,
    declared_wheels,
    missing_wheels,
)
from release.proc import python_module, run_unchecked
from release.versioning import CalVer
from tools.krunner.envcheck import check_environment
from tools.krunner.pins import Inputs, load_inputs

FIRST_PARTY_PREFIX = "backend-ai-"
_ARCH = re.compile(r"(x86_64|amd64|aarch64|arm64)$")
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


@dataclass(frozen=True)
class Expectations:
    """What every artifact of the release must agree on."""

    version: CalVer
    distributions: Mapping[NormalizedName, str]
    requires_python: str

    @classmethod
    def build(
        cls, version: CalVer, distributions: Iterable[str], requires_python: str
    ) -> Expectations:
        names = {canonicalize_name(name): name for name in distributions}
        return cls(version, names, requires_python)

    def includes(self, artifact: Artifact) -> bool:
        """Whether the artifact is one of this release's: a workspace distribution at VERSION."""
        return artifact.name in self.distributions and artifact.version == self.version.pep440

    def partition(self, artifacts: Iterable[Artifact]) -> tuple[list[Artifact], list[Artifact]]:
        """The release's artifacts, and the others (stale versions, foreign distributions)."""
        release: list[Artifact] = []
        others: list[Artifact] = []
        for artifact in artifacts:
            (release if self.includes(artifact) else others).append(artifact)
        return release, others

    def is_first_party(self, name: NormalizedName) -> bool:
        return name in self.distributions or name.startswith(FIRST_PARTY_PREFIX)


@dataclass(frozen=True)
class Rebuild:
    """`verify --reproducible`: the command that builds the tree at `root` again into {dist}."""

    root: Path
    command: str


@dataclass(frozen=True)
class Findings:
    """What `verify` found: problems (any one refuses the release), and the declared krunner
    platform wheels that are missing (a problem unless they are allowed to be)."""

    problems: list[str]
    missing: list[MissingWheel]
    missing_allowed: bool

    @property
    def refused_missing(self) -> list[MissingWheel]:
        return [] if self.missing_allowed else self.missing


def verify_dist(
    dist_dir: Path,
    expected: Expectations,
    wheelhouses: Sequence[Path],
    rebuild: Rebuild | None = None,
    platform_wheels: PlatformWheels | None = None,
) -> Findings:
    problems = check_entries(dist_dir)
    release, others = expected.partition(list_artifacts(dist_dir))
    declared = []
    if platform_wheels is not None:
        declared = declared_wheels(
            platform_wheels.inputs_file, expected.version.canonical, expected.distributions
        )
    # A krunner distribution's wheels are its platform wheels: checked as declared ones below.
    problems += check_inventory(release, others, expected, {w.project for w in declared})
    reasons = platform_wheels.reasons if platform_wheels is not None else None
    missing = missing_wheels(dist_dir, declared, reasons)
    allowed = platform_wheels is not None and platform_wheels.allow_missing
    if not allowed:
        problems += [f"missing krunner platform wheel {m.line()}" for m in missing]
    contents: dict[Artifact, Contents] = {}
    for artifact in release:
        try:
            contents[artifact] = read_contents(artifact)
        except ReleaseError as unreadable:
            problems.append(str(unreadable))
    for artifact, content in contents.items():
        problems += check_artifact(artifact, content, expected)
    installable = installable_here({a: c for a, c in contents.items() if a.kind == "wheel"})
    problems += check_overlapping_files(installable)
    problems += check_twine([a.path for a in contents])
    if installable:
        problems += check_install(installable, wheelhouses)
    if rebuild is not None:
        problems += check_reproducible(rebuild.root, release, rebuild.command)
    return Findings(problems, missing, allowed)


def check_entries(dist_dir: Path) -> list[str]:
    """A release directory holds sdists and wheels only: anything else would not ship, or would
    ship by accident."""
    if not dist_dir.is_dir():
        raise ReleaseError(f"dist directory {dist_dir} does not exist")
    problems = []
    for path in sorted(dist_dir.iterdir()):
        if path.is_dir():
            problems.append(f"{path.name}/: a directory; a release directory holds only files")
        elif not path.is_file() or parse_artifact(path) is None:
            problems.append(f"{path.name}: not an sdist or a wheel; remove it from {dist_dir}")
    return problems


def installable_here(wheels: Mapping[Artifact, Contents]) -> dict[Artifact, Contents]:
    """Per distribution, the wheel pip would pick on this machine; others cannot install here."""
    rank = {str(tag): index for index, tag in enumerate(sys_tags())}
    best: dict[NormalizedName, tuple[int, Artifact]] = {}
    for wheel in wheels:
        score = min((rank[str(tag)] for tag in wheel.tags if str(tag) in rank), default=None)
        if score is not None and (wheel.name not in best or score < best[wheel.name][0]):
            best[wheel.name] = (score, wheel)
    return {wheel: wheels[wheel] for _, wheel in best.values()}


def check_inventory(
    release: Sequence[Artifact],
    others: Sequence[Artifact],
    expected: Expectations,
    platform_projects: Collection[NormalizedName] = (),
) -> list[str]:
    """One sdist and at least one wheel (at most one per platform) of each distribution; a
    distribution in `platform_projects` may have no wheel (its wheels are checked as declared
    platform wheels)."""
    problems = [_stray_artifact(a, expected) for a in others]
    canonical = expected.version.canonical
    for name, project in sorted(expected.distributions.items()):
        sdists = [a for a in release if a.name == name and a.kind == "sdist"]
        if len(sdists) != 1:
            problems.append(f"{project}: expected one sdist at {canonical}, found {len(sdists)}")
        wheels = [a for a in release if a.name == name and a.kind == "wheel"]
        if wheels or name not in platform_projects:
            problems += _check_wheel_count(project, wheels, canonical)
        for sdist in sdists:
            problems += _check_sdist_name(sdist, canonical)
    return problems


def _stray_artifact(artifact: Artifact, expected: Expectations) -> str:
    if artifact.name not in expected.distributions:
        known = ", ".join(sorted(expected.distributions.values()))
        return f"{artifact.path.name}: not a workspace distribution (expected one of: {known})"
    release = expected.version.canonical
    return f"{artifact.path.name}: stale artifact at {artifact.version}, the release is {release}"


def _check_wheel_count(project: str, wheels: Sequence[Artifact], canonical: str) -> list[str]:
    if not wheels:
        return [f"{project}: expected a wheel at {canonical}, found none"]
    by_platform: dict[str, list[Artifact]] = defaultdict(list)
    for wheel in wheels:
        by_platform[wheel.platform_key].append(wheel)
    return [
        f"{project}: {len(group)} wheels for {key}: {', '.join(w.path.name for w in group)}"
        for key, group in sorted(by_platform.items())
        if len(group) > 1
    ]


def _check_sdist_name(sdist: Artifact, canonical: str) -> list[str]:
    wanted = f"{sdist.name.replace('-', '_')}-{canonical}.tar.gz"
    if sdist.path.name == wanted:
        return []
    return [f"{sdist.path.name}: not the PEP 625 sdist name {wanted}"]


def check_artifact(artifact: Artifact, contents: Contents, expected: Expectations) -> list[str]:
    metadata = read_metadata(artifact, contents)
    problems = check_metadata(metadata, expected)
    if artifact.kind == "wheel":
        problems += check_wheel_tags(artifact, contents)
        problems += check_krunner_archives(artifact, contents)
        problems += check_krunner_environments(artifact, contents)
    return [f"{artifact.path.name}: {problem}" for problem in problems]


def check_metadata(metadata: Message, expected: Expectations) -> list[str]:
    problems = []
    canonical = expected.version.canonical
    if metadata.get("Version") != canonical:
        problems.append(f"metadata Version is {metadata.get('Version')}, expected {canonical}")
    problems += _check_requires_python(metadata.get("Requires-Python"), expected.requires_python)
    for line in metadata.get_all("Requires-Dist") or ():
        problems += _check_requirement(str(line), expected)
    return problems


def _check_requires_python(value: str | None, wanted: str) -> list[str]:
    if value is None:
        return [f"Requires-Python is missing, expected {wanted}"]
    try:
        matches = SpecifierSet(value) == SpecifierSet(wanted)
    except InvalidSpecifier:
        matches = False
    return [] if matches else [f"Requires-Python is {value}, expected {wanted} (pants.toml)"]


def _check_requirement(line: str, expected: Expectations) -> list[str]:
    try:
        requirement = Requirement(line)
    except InvalidRequirement:
        return [f"cannot parse Requires-Dist {line!r}"]
    name = canonicalize_name(requirement.name)
    if name.startswith("types-"):
        return [f"type stub {requirement.name} is a runtime requirement"]
    pin = SpecifierSet(f"=={expected.version.canonical}")
    if expected.is_first_party(name) and requirement.specifier != pin:
        shown = str(requirement.specifier) or "unpinned"
        return [f"first-party requirement {requirement.name} is {shown}, expected {pin}"]
    return []


def check_wheel_tags(wheel: Artifact, contents: Contents) -> list[str]:
    """The WHEEL file must agree with the file name: renaming a wheel does not retag it."""
    wheel_file = contents.wheel_file()
    if wheel_file is None:
        return ["has no .dist-info/WHEEL file"]
    inside = frozenset(wheel_file.get_all("Tag") or ())
    named = frozenset(str(tag) for tag in wheel.tags)
    problems = []
    if inside != named:
        problems.append(f"WHEEL file tags {', '.join(sorted(inside))} differ from the file name's")
    purelib = str(wheel_file.get("Root-Is-Purelib", "")).strip().lower() == "true"
    if purelib and _platforms(wheel):
        problems.append("claims a platform but its WHEEL file says Root-Is-Purelib: true")
    return problems


def check_krunner_archives(wheel: Artifact, contents: Contents) -> list[str]:
    """A krunner wheel that claims a platform must carry the environment for that platform."""
    if "krunner" not in wheel.name:
        return []
    archives = {Path(path).name for path in contents.data}
    distros = _krunner_distros(contents) or ["*"]
    problems = []
    for arch in sorted({a for a in map(_arch, _platforms(wheel)) if a}):
        for distro in distros:
            if not _has_archive(archives, distro, arch):
                problems.append(f"claims {arch} but has no krunner-env.{distro}.{arch}.tar.xz")
    return problems


_ARCHIVE = re.compile(r"(?:.*/)?krunner-env\.(?P<distro>.+)\.(?P<arch>x86_64|aarch64)\.tar\.xz")


def check_krunner_environments(
    wheel: Artifact, contents: Contents, inputs: Inputs | None = None
) -> list[str]:
    """Each archive of a krunner platform wheel must keep the promises of the wheel's tag: the
    agent's layout, the CPython of krunner-python.<distro>.txt, the pinned (locked) wheels, and
    auditwheel's policy of the tag for every ELF file (a stand-in-built wheel fails here), the
    SBOM (the wheel's and the archive's, equal) and the licence files."""
    if "krunner" not in wheel.name or not _platforms(wheel):
        return []
    problems = []
    for path, data in sorted(contents.data.items()):
        if not (match := _ARCHIVE.fullmatch(path)):
            continue
        distro, arch = match["distro"], match["arch"]
        python_file = path.rsplit("/", 1)[0] + f"/krunner-python.{distro}.txt"
        if python_file not in contents.data:
            problems.append(f"has no {python_file} next to {Path(path).name}")
            continue
        inputs = inputs or load_inputs()
        for platform in sorted(p for p in _platforms(wheel) if _arch(p) == arch):
            pins = inputs.wheels.get((distro, arch), ())
            minor = contents.data[python_file].decode().strip()
            problems += [
                f"{Path(path).name}: {problem}"
                for problem in check_environment(data, platform, minor, pins, contents.data)
            ]
    return problems


def _arch(platform: str) -> str | None:
    """The machine a platform tag names, in the krunner's spelling (x86_64, aarch64)."""
    match = _ARCH.search(platform)
    return _ARCH_ALIASES.get(match[1], match[1]) if match else None


def _platforms(wheel: Artifact) -> set[str]:
    return {tag.platform for tag in wheel.tags if tag.platform != "any"}


def _krunner_distros(contents: Contents) -> list[str]:
    """The distro keys the package's versions.txt declares, if it has one."""
    listing = next(
        (data for path, data in contents.data.items() if path.endswith("/versions.txt")), b""
    )
    return listing.decode("utf-8", "replace").split()


def _has_archive(names: set[str], distro: str, arch: str) -> bool:
    pattern = re.compile(
        rf"krunner-env\.{'.+' if distro == '*' else re.escape(distro)}\.{arch}\.tar\.xz"
    )
    return any(pattern.fullmatch(name) for name in names)


def check_overlapping_files(wheels: Mapping[Artifact, Contents]) -> list[str]:
    """Two wheels installing the same file overwrite each other (e.g. a namespace __init__.py)."""
    owners: dict[str, list[str]] = defaultdict(list)
    for wheel, contents in wheels.items():
        for path in contents.data:
            if ".dist-info/" not in path:
                owners[path].append(wheel.path.name)
    return [
        f"{path} is shipped by more than one wheel: {', '.join(names)}"
        for path, names in sorted(owners.items())
        if len(names) > 1
    ]


def check_twine(paths: Sequence[Path]) -> list[str]:
    if not paths:
        return []
    twine = python_module("twine")
    command = [*twine.argv, "--no-color", "check", *(str(p) for p in paths)]
    env = {**twine.env, "COLUMNS": "1000"}  # one message per line
    result = run_unchecked(command, "twine check", env=env)
    if result.returncode == 0:
        return []
    failures = _twine_failures(result.stdout + result.stderr)
    return failures or [f"twine check failed (exit {result.returncode})"]


def _twine_failures(output: str) -> list[str]:
    """One line per failed file: `<file>: twine check failed: <its messages>`."""
    failures: list[str] = []
    in_failed_file = False
    for raw_line in output.splitlines():
        line = raw_line.strip()
        checking = re.match(r"Checking (.+): (FAILED|PASSED)", line)
        if checking:
            in_failed_file = checking[2] == "FAILED"
            if in_failed_file:
                failures.append(f"{Path(checking[1]).name}: twine check failed:")
        elif in_failed_file and line:
            failures[-1] += " " + line.removeprefix("ERROR").strip()
    return failures


def check_reproducible(root: Path, release: list[Artifact], template: str) -> list[str]:
    """Rebuilds the tree and compares digests with the given artifacts, one line per mismatch."""
    (root / "dist").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".rebuild-", dir=root / "dist") as scratch:
        rebuilt = {a.path.name: a for a in package(root, template, Path(scratch), "the rebuild")}
        return [problem for artifact in release if (problem := _compare(artifact, rebuilt))]


def _compare(artifact: Artifact, rebuilt: dict[str, Artifact]) -> str | None:
    twin = rebuilt.get(artifact.path.name)
    if twin is None:
        return f"{artifact.path.name}: the rebuild produced no file of this name"
    before, after = sha256_file(artifact.path), sha256_file(twin.path)
    if before != after:
        return (
            f"{artifact.path.name}: not reproducible: sha256 {before} != {after} after rebuilding"
        )
    return None
