"""The `diff` report: what changed between two releases, per distribution, file by file.

Files are paired after replacing each side's version strings with a placeholder, so that
`backend_ai_kernel-24.3.4rc1/PKG-INFO` pairs with `backend_ai_kernel-24.3.4rc2/PKG-INFO`; the
same substitution on contents decides whether a distribution's differences are "only the version".
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path

from packaging.utils import NormalizedName

from release.artifacts import (
    Artifact,
    Contents,
    Member,
    list_artifacts,
    parse_artifact,
    read_contents,
    read_metadata,
)
from release.builds import build_ref
from release.errors import ReleaseError
from release.fileio import sha256_file
from release.versioning import written_forms

MAX_DIFF_LINES = 400
VERSION_ONLY = "only the version changed"
_PLACEHOLDER = b"{VERSION}"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a label for the report and its artifacts."""

    label: str
    artifacts: Sequence[Artifact]


def resolve_side(
    spec: str, role: str, root: Path, template: str, stack: contextlib.ExitStack
) -> Side:
    """OLD or NEW of `diff`: an artifact file, a dist directory, or a git ref (built)."""
    path = Path(spec)
    if path.is_file():
        artifact = parse_artifact(path)
        if artifact is None:
            raise ReleaseError(f"{role} {spec} is neither an sdist (.tar.gz) nor a wheel (.whl)")
        return Side(spec, [artifact])
    if path.is_dir():
        artifacts = list_artifacts(path)
        if not artifacts:
            raise ReleaseError(f"{role} {spec} holds no sdists or wheels")
        return Side(spec, artifacts)
    return Side(spec, build_ref(spec, role, root, template, stack))


class Substitution:
    """Replaces each spelling of a version (canonical, zero-padded, .devN/devN) by a placeholder."""

    def __init__(self, artifact: Artifact) -> None:
        forms = written_forms(artifact.version)
        alternatives = b"|".join(
            re.escape(f.encode()) for f in sorted(forms, key=len, reverse=True)
        )
        # Not inside a longer version or word: 24.3.4 must not match in 24.3.45 or 24.3.4rc1.
        self._pattern = re.compile(
            rb"(?<![\w.])(?:" + alternatives + rb")(?![\w]|\.\d|\.dev|\.post)"
        )

    def bytes(self, data: bytes) -> bytes:
        return self._pattern.sub(_PLACEHOLDER, data)

    def text(self, value: str) -> str:
        return self.bytes(value.encode()).decode()


@dataclass
class Tally:
    """What changed in one distribution once version strings are set aside."""

    changed: int = 0
    added: int = 0
    removed: int = 0
    version_differs: bool = False
    bytes_differ: bool = False
    unpaired: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.changed += other.changed
        self.added += other.added
        self.removed += other.removed
        self.version_differs |= other.version_differs
        self.bytes_differ |= other.bytes_differ
        self.unpaired += other.unpaired

    def summary(self) -> str:
        if self.changed or self.added or self.removed or self.unpaired:
            parts = [
                _count(self.changed, "changed"),
                _count(self.added, "added"),
                _count(self.removed, "removed"),
            ]
            return ", ".join(parts + self.unpaired)
        if self.version_differs:
            return VERSION_ONLY
        if self.bytes_differ:
            return "same content; archive metadata (timestamps, owners or order) differs"
        return "identical"


def _count(number: int, what: str) -> str:
    return f"{number} file{'' if number == 1 else 's'} {what}"


def diff_report(old: Side, new: Side) -> list[str]:
    lines = [f"# Comparing `{old.label}` & `{new.label}`", ""]
    summaries = []
    for name in sorted({a.name for a in (*old.artifacts, *new.artifacts)}):
        section, title, tally = _diff_distribution(name, old, new)
        lines += [f"## {title}", "", *section]
        summaries.append(f"{title}: {tally.summary()}")
    return [*lines, "## Summary", "", *summaries]


def _diff_distribution(name: NormalizedName, old: Side, new: Side) -> tuple[list[str], str, Tally]:
    olds = {_pair_key(a): a for a in old.artifacts if a.name == name}
    news = {_pair_key(a): a for a in new.artifacts if a.name == name}
    lines: list[str] = []
    tally = Tally()
    title: str | None = None
    for key in sorted(olds.keys() | news.keys()):
        before, after = olds.get(key), news.get(key)
        if before is None or after is None:
            present = before or after
            assert present is not None
            where = "OLD" if before else "NEW"
            lines += [f"### {present.path.name}", f" * only in {where}", ""]
            kind = (
                f"{present.kind} {present.platform_key}" if present.platform_key else present.kind
            )
            tally.unpaired.append(f"{kind} only in {where}")
            continue
        before_contents, after_contents = read_contents(before), read_contents(after)
        title = title or _display_name(after, after_contents)
        pair_lines, pair_tally = _diff_pair(before, after, before_contents, after_contents)
        lines += pair_lines
        tally.add(pair_tally)
    if title is None:  # nothing paired: the distribution is on one side only
        only = next(iter({**olds, **news}.values()))
        title = _display_name(only, read_contents(only))
    return lines, title, tally


def _display_name(artifact: Artifact, contents: Contents) -> str:
    """The project name as its metadata spells it (backend.ai-kernel, not backend-ai-kernel)."""
    return str(read_metadata(artifact, contents).get("Name", artifact.name))


def _pair_key(artifact: Artifact) -> tuple[str, str]:
    return (artifact.kind, artifact.platform_key)


def _diff_pair(
    before: Artifact, after: Artifact, before_contents: Contents, after_contents: Contents
) -> tuple[list[str], Tally]:
    header = f"### {before.kind}: `{before.path.name}` & `{after.path.name}`"
    tally = Tally(version_differs=before.version != after.version)
    before_digest, after_digest = sha256_file(before.path), sha256_file(after.path)
    if before_digest == after_digest:
        return [header, f" * identical (sha256 {after_digest})", ""], tally
    tally.bytes_differ = True
    subs = (Substitution(before), Substitution(after))
    lines = [header, f" * sha256 {before_digest} → {after_digest}", ""]
    lines += _fenced("file list", _listing(before_contents), _listing(after_contents))
    lines += _fenced(
        "metadata", _metadata_lines(before, before_contents), _metadata_lines(after, after_contents)
    )
    member_lines, member_tally = _diff_members(before_contents, after_contents, subs)
    tally.add(member_tally)
    return lines + member_lines, tally


def _listing(contents: Contents) -> list[str]:
    return [member.listing_line() for member in contents.members.values()]


def _metadata_lines(artifact: Artifact, contents: Contents) -> list[str]:
    metadata: Message = read_metadata(artifact, contents)
    return [f"{key}: {value}" for key, value in metadata.items() if key != "Description"]


def _fenced(title: str, before: list[str], after: list[str]) -> list[str]:
    if before == after:
        return [f"#### {title}", " * identical", ""]
    return [f"#### {title}", "", "```diff", *_unified(before, after), "```", ""]


def _unified(before: Sequence[str], after: Sequence[str]) -> list[str]:
    lines = list(difflib.unified_diff(before, after, lineterm="", n=3))[2:]  # drop ---/+++ names
    if len(lines) > MAX_DIFF_LINES:
        return [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more diff lines"]
    return lines


def _diff_members(
    before: Contents, after: Contents, subs: tuple[Substitution, Substitution]
) -> tuple[list[str], Tally]:
    old_paths = {subs[0].text(p): p for p in before.members}
    new_paths = {subs[1].text(p): p for p in after.members}
    lines: list[str] = []
    tally = Tally()
    for key in sorted(old_paths.keys() | new_paths.keys()):
        old_path, new_path = old_paths.get(key), new_paths.get(key)
        if old_path is None or new_path is None:
            lines += [
                f"#### `{old_path or new_path}`",
                f" * {'removed' if old_path else 'added'}",
                "",
            ]
            tally.removed += old_path is not None
            tally.added += new_path is not None
            continue
        member_lines, changed = _diff_member(before, after, old_path, new_path, subs)
        lines += member_lines
        tally.changed += changed
    return lines, tally


def _diff_member(
    before: Contents,
    after: Contents,
    old_path: str,
    new_path: str,
    subs: tuple[Substitution, Substitution],
) -> tuple[list[str], bool]:
    title = f"#### `{old_path}`" if old_path == new_path else f"#### `{old_path}` & `{new_path}`"
    old_member, new_member = before.members[old_path], after.members[new_path]
    old_data, new_data = before.data.get(old_path, b""), after.data.get(new_path, b"")
    notes = _mode_note(old_member, new_member)
    mode_changed = bool(notes)
    if old_data == new_data:
        return [title, *(notes or [" * identical"]), ""], mode_changed
    version_only = _comparable(old_path, old_data, subs[0]) == _comparable(
        new_path, new_data, subs[1]
    )
    notes.append(" * only the version string differs" if version_only else " * content differs")
    return [title, *notes, *_content_diff(old_data, new_data), ""], mode_changed or not version_only


def _comparable(path: str, data: bytes, substitution: Substitution) -> bytes:
    """Content with the version set aside. RECORD digests follow the files they list, which
    are compared themselves, so only its list of paths counts."""
    if path.endswith(".dist-info/RECORD"):
        data = b"\n".join(sorted(line.split(b",", 1)[0] for line in data.splitlines()))
    return substitution.bytes(data)


def _mode_note(old: Member, new: Member) -> list[str]:
    if old.mode == new.mode and old.is_dir == new.is_dir:
        return []
    return [f" * mode {oct(old.mode)} → {oct(new.mode)}"]


def _content_diff(old_data: bytes, new_data: bytes) -> list[str]:
    old_text, new_text = _as_text(old_data), _as_text(new_data)
    if old_text is None or new_text is None:
        return [f" * binary: sha256 {_digest(old_data)} → {_digest(new_data)}"]
    return ["", "```diff", *_unified(old_text.splitlines(), new_text.splitlines()), "```"]


def _as_text(data: bytes) -> str | None:
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
