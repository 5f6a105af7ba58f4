"""The project's CalVer release tags and the rules for moving from one to the next.

A tag is written `YY.MM.PATCH` with a zero-padded month and an optional suffix: a pre-release
`aN`, `bN`, `rcN`, or a development release `.devN` (`devN` is read too). The tag is kept as
written in VERSION and in git; metadata uses the canonical PEP 440 form (`24.03.4rc1` ->
`24.3.4rc1`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from packaging.version import Version

from release.errors import ReleaseError
from release.fileio import atomic_write
from setupgen.metadata import InvalidTag, match_tag

KINDS = ("dev", "a", "b", "rc", "final", "patch")
PRE_RELEASE_KINDS = ("a", "b", "rc")


@dataclass(frozen=True)
class CalVer:
    """A release tag; `str()` gives it back exactly as written."""

    year: str
    month: str
    patch: int
    pre: str | None = None
    pre_n: int = 0
    dev_n: int | None = None
    dev_sep: str = "."

    @classmethod
    def parse(cls, text: str) -> CalVer:
        # The build's own grammar (tools/pants-plugins/setupgen): never a tag it would reject.
        try:
            match = match_tag(text)
        except InvalidTag as error:
            raise ReleaseError(str(error)) from None
        dev_n = match["dev_n"]
        return cls(
            year=match["year"],
            month=match["month"],
            patch=int(match["patch"]),
            pre=match["pre"],
            pre_n=int(match["pre_n"] or 0),
            dev_n=None if dev_n is None else int(dev_n),
            dev_sep="." if dev_n is None else match["dev_sep"],
        )

    def __str__(self) -> str:
        suffix = ""
        if self.pre is not None:
            suffix = f"{self.pre}{self.pre_n}"
        elif self.dev_n is not None:
            suffix = f"{self.dev_sep}dev{self.dev_n}"
        return f"{self.year}.{self.month}.{self.patch}{suffix}"

    @property
    def pep440(self) -> Version:
        return Version(str(self))

    @property
    def canonical(self) -> str:
        return str(self.pep440)

    def final(self) -> CalVer:
        return replace(self, pre=None, pre_n=0, dev_n=None)

    def next_patch(self) -> CalVer:
        return replace(self.final(), patch=self.patch + 1)


def bump(current: CalVer, kind: str) -> CalVer:
    """The next tag of the given KIND; raises ReleaseError when the step makes no sense."""
    if kind not in KINDS:
        raise ReleaseError(f"unknown KIND {kind!r}; expected one of: {', '.join(KINDS)}")
    if current.dev_n is not None:
        new = _bump_dev(current, kind)
    elif current.pre is not None:
        new = _bump_pre_release(current, kind)
    else:
        new = _bump_final(current, kind)
    ensure_newer(current, new)
    return new


def _bump_final(current: CalVer, kind: str) -> CalVer:
    if kind == "final":
        raise ReleaseError(f"{current} is already final; use patch, a, b, rc or dev")
    following = current.next_patch()
    if kind == "patch":
        return following
    if kind == "dev":
        return replace(following, dev_n=0)
    return replace(following, pre=kind, pre_n=1)


def _bump_pre_release(current: CalVer, kind: str) -> CalVer:
    assert current.pre is not None
    if kind in ("final", "patch"):
        return current.final()
    if kind == "dev":
        raise ReleaseError(
            f"{current} is already a pre-release; a dev release of the same patch would be older"
            " (use a, b, rc, final or --to)"
        )
    step = PRE_RELEASE_KINDS.index(kind) - PRE_RELEASE_KINDS.index(current.pre)
    if step < 0:
        raise ReleaseError(
            f"{current} is already at {current.pre}; pre-releases only move forward"
            f" (a -> b -> rc) within {current.final()} (use final, or --to)"
        )
    return replace(current, pre=kind, pre_n=current.pre_n + 1 if step == 0 else 1)


def _bump_dev(current: CalVer, kind: str) -> CalVer:
    assert current.dev_n is not None
    if kind == "dev":
        return replace(current, dev_n=current.dev_n + 1)
    if kind in ("final", "patch"):
        return current.final()
    return replace(current.final(), pre=kind, pre_n=1)


def bump_to(current: CalVer, target: str) -> CalVer:
    new = CalVer.parse(target)
    ensure_newer(current, new)
    return new


def ensure_newer(current: CalVer, new: CalVer) -> None:
    if new.pep440 == current.pep440:
        raise ReleaseError(f"{new} is the current version ({current}), not a newer one")
    if new.pep440 < current.pep440:
        raise ReleaseError(f"{new} is older than the current version {current} (PEP 440 order)")


def written_forms(version: Version) -> set[str]:
    """Every way a release tag for this canonical version may be written, canonical included."""
    year, month, patch = (list(version.release) + [0, 0, 0])[:3]
    suffix = ""
    if version.pre is not None:
        suffix = f"{version.pre[0]}{version.pre[1]}"
    forms = {str(version)}
    for month_text in (f"{month}", f"{month:02d}"):
        base = f"{year}.{month_text}.{patch}{suffix}"
        if version.dev is None:
            forms.add(base)
        else:
            forms.update({f"{base}.dev{version.dev}", f"{base}dev{version.dev}"})
    return forms


def read_version_file(path: Path) -> CalVer:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ReleaseError(f"cannot read {path}: {reason}") from None
    tag = text.strip()
    if not tag:
        raise ReleaseError(f"{path} is empty; it must hold a release tag such as 24.03.4rc1")
    try:
        return CalVer.parse(tag)
    except ReleaseError as error:
        raise ReleaseError(f"{path}: {error}") from None


def write_version_file(path: Path, version: CalVer) -> None:
    atomic_write(path, f"{version}\n".encode())
