"""Computes the shared setup() metadata of every python_distribution in the workspace.

This module has no Pants imports so that its rules can be unit-tested directly. It runs inside
Pants (CPython 3.9) and uses the `packaging` that Pants itself depends on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

# Release managers write CalVer tags YY.MM.PATCH with a zero-padded month and an optional
# pre-release (aN, bN, rcN) or development (.devN; upstream's old tags wrote devN) suffix.
# The release tool parses tags with this same pattern, so it never writes one a build rejects.
TAG_PATTERN = re.compile(
    r"(?P<year>\d{2})\.(?P<month>\d{2})\.(?P<patch>0|[1-9]\d*)"
    r"(?:(?P<pre>a|b|rc)(?P<pre_n>0|[1-9]\d*)|(?P<dev_sep>\.?)dev(?P<dev_n>0|[1-9]\d*))?"
)
TAG_FORMAT = (
    "YY.MM.PATCH with a zero-padded month and an optional aN, bN, rcN or .devN suffix,"
    " e.g. 24.03.4rc1"
)

DEVELOPMENT_STATUS = {
    "dev": "Development Status :: 2 - Pre-Alpha",
    "a": "Development Status :: 3 - Alpha",
    "b": "Development Status :: 4 - Beta",
    "rc": "Development Status :: 4 - Beta",
    "final": "Development Status :: 5 - Production/Stable",
}

LICENSE_CLASSIFIERS = {
    "LGPLv3": "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)",
    "MIT": "License :: OSI Approved :: MIT License",
    "Apache-2.0": "License :: OSI Approved :: Apache Software License",
}

COMMON_CLASSIFIERS = (
    "Intended Audience :: Developers",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python",
    "Programming Language :: Python :: 3",
    "Topic :: Scientific/Engineering",
    "Topic :: Software Development",
)

# Keys the plugin owns; a BUILD file that sets them would silently fight the plugin.
COMPUTED_KEYS = ("version", "python_requires", "long_description", "long_description_content_type")
REQUIRED_KEYS = ("name", "description", "license")

# Enough minor versions to enumerate any constraint we will meet.
_PYTHON_MINORS = tuple(f"3.{minor}" for minor in range(0, 40))
_PATCHES = 50


class MetadataError(ValueError):
    """A problem with the inputs of a distribution's metadata, worded for the person fixing it."""


class InvalidTag(MetadataError):
    """Text that is not a release tag; `reason` completes the sentence "TAG is …"."""

    def __init__(self, tag: str, reason: str) -> None:
        super().__init__(f"{tag!r} is {reason}")
        self.tag = tag
        self.reason = reason


def match_tag(tag: str) -> re.Match[str]:
    """The parts of a release tag (see TAG_PATTERN), or InvalidTag saying what is wrong."""
    match = TAG_PATTERN.fullmatch(tag)
    if match is None:
        try:
            Version(tag)
        except InvalidVersion:
            raise InvalidTag(tag, f"not a valid version: release tags are {TAG_FORMAT}") from None
        raise InvalidTag(tag, f"valid PEP 440 but not a release tag: tags are {TAG_FORMAT}")
    if not 1 <= int(match["month"]) <= 12:
        raise InvalidTag(tag, "not a release tag: months run from 01 to 12 (a zero-padded month)")
    return match


@dataclass(frozen=True)
class ProjectDefaults:
    """Metadata every distribution shares unless its BUILD file says otherwise."""

    author: str
    url: str
    project_urls: Mapping[str, str]


def parse_version(text: str, source: str) -> Version:
    """Parses the VERSION file's content, which must be a CalVer release tag."""
    tag = text.strip()
    if not tag:
        raise MetadataError(f"{source} is empty; it must hold a release tag such as 24.03.4rc1.")
    if "\n" in tag:
        raise MetadataError(f"{source} must hold a single line, found {text!r}.")
    try:
        match_tag(tag)
    except InvalidTag as e:
        raise MetadataError(f"{source} holds {tag!r}, which is {e.reason}") from None
    return Version(tag)


def development_status(version: Version) -> str:
    if version.is_devrelease:
        return DEVELOPMENT_STATUS["dev"]
    if version.pre is not None:
        return DEVELOPMENT_STATUS[version.pre[0]]
    return DEVELOPMENT_STATUS["final"]


_CONSTRAINT = re.compile(r"\s*(?P<interpreter>[A-Za-z]\w*)?\s*(?P<range>.*)")


def python_requires(constraints: Iterable[str], source: str) -> str:
    """Turns interpreter constraints such as `CPython>=3.12,<3.13` into `>=3.12,<3.13`."""
    alternatives = list(constraints)
    if len(alternatives) != 1:
        raise MetadataError(
            f"{source} has the interpreter constraints {alternatives}; Requires-Python needs "
            "exactly one constraint (a single range such as CPython>=3.12,<3.13)."
        )
    constraint = alternatives[0]
    match = _CONSTRAINT.fullmatch(constraint)
    assert match is not None  # the pattern matches any string
    if match["interpreter"] not in (None, "CPython"):
        raise MetadataError(f"{source}: {constraint!r} is not a CPython constraint.")
    try:
        specifier = SpecifierSet(match["range"])
    except InvalidSpecifier as e:
        raise MetadataError(f"{source}: {constraint!r} is not a valid version range.") from e
    if not python_minor_versions(specifier):
        raise MetadataError(f"{source}: {constraint!r} admits no Python 3 minor version.")
    # Keep the order as written: `>=3.12,<3.13` reads better than a sorted `<3.13,>=3.12`.
    return ",".join(part.strip() for part in match["range"].split(","))


def python_minor_versions(specifier: SpecifierSet) -> list[str]:
    """The 3.x minor versions a range admits: `>=3.12,<3.13` gives ["3.12"].

    A minor counts when any of its patch releases is admitted, so `>=3.12.2,<3.13` gives 3.12.
    """
    return [
        minor
        for minor in _PYTHON_MINORS
        if any(specifier.contains(f"{minor}.{patch}") for patch in range(_PATCHES))
    ]


def classifiers(
    version: Version, requires_python: str, license_name: str, extra: Iterable[str], source: str
) -> list[str]:
    license_classifier = LICENSE_CLASSIFIERS.get(license_name)
    if license_classifier is None:
        known = ", ".join(sorted(LICENSE_CLASSIFIERS))
        raise MetadataError(f"{source}: unknown license {license_name!r} (known: {known}).")
    python_versions = [
        f"Programming Language :: Python :: {minor}"
        for minor in python_minor_versions(SpecifierSet(requires_python))
    ]
    computed = [
        development_status(version),
        *COMMON_CLASSIFIERS,
        *python_versions,
        license_classifier,
    ]
    return computed + [c for c in extra if c not in computed]


def long_description_content_type(readme_path: str) -> str:
    return "text/markdown" if readme_path.endswith(".md") else "text/x-rst"


def compute_setup_kwargs(
    explicit: Mapping[str, Any],
    *,
    version_text: str,
    version_source: str,
    interpreter_constraints: Iterable[str],
    readme_path: str,
    readme_text: str,
    defaults: ProjectDefaults,
    target: str,
) -> dict[str, Any]:
    """The complete setup() kwargs for one distribution, validated, with clear errors."""
    for key in REQUIRED_KEYS:
        if not explicit.get(key):
            raise MetadataError(f"{target}: `provides=python_artifact(...)` must set `{key}`.")
    for key in COMPUTED_KEYS:
        if key in explicit:
            raise MetadataError(
                f"{target}: do not set `{key}` in python_artifact(); it is computed from "
                "VERSION, the interpreter constraints and the package README."
            )
    if not str(explicit["name"]).startswith("backend.ai-"):
        raise MetadataError(
            f"{target}: distribution name {explicit['name']!r} must start with " "'backend.ai-'."
        )
    if not readme_text.strip():
        raise MetadataError(f"{target}: {readme_path} is empty; it becomes the long description.")
    version = parse_version(version_text, version_source)
    requires = python_requires(interpreter_constraints, target)
    kwargs = {
        "author": defaults.author,
        "url": defaults.url,
        "project_urls": dict(defaults.project_urls),
        "zip_safe": False,
        **explicit,
    }
    kwargs.update(
        version=str(version),
        python_requires=requires,
        long_description=readme_text,
        long_description_content_type=long_description_content_type(readme_path),
        classifiers=classifiers(
            version, requires, str(explicit["license"]), explicit.get("classifiers", ()), target
        ),
    )
    return kwargs
