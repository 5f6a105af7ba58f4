"""setupgen's metadata: the version grammar, Requires-Python and the classifiers."""

from __future__ import annotations

from typing import Any

import pytest
from packaging.version import Version

from setupgen.metadata import (
    MetadataError,
    ProjectDefaults,
    compute_setup_kwargs,
    development_status,
    parse_version,
    python_requires,
)

DEFAULTS = ProjectDefaults(
    author="Lablup Inc. and contributors",
    url="https://www.backend.ai/",
    project_urls={"Documentation": "https://docs.backend.ai/"},
)
ARTIFACT = {
    "name": "backend.ai-kernel",
    "description": "Backend.AI Kernel Runner",
    "license": "LGPLv3",
}


def compute(explicit: dict[str, Any] = ARTIFACT, **overrides: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = dict(
        version_text="24.03.4rc1\n",
        version_source="VERSION",
        interpreter_constraints=["CPython>=3.12,<3.13"],
        readme_path="src/ai/backend/kernel/README.md",
        readme_text="# backend.ai-kernel\n",
        defaults=DEFAULTS,
        target="src/ai/backend/kernel:dist",
    )
    inputs.update(overrides)
    return compute_setup_kwargs(explicit, **inputs)


@pytest.mark.parametrize(
    "written, canonical",
    [
        ("24.03.4rc1\n", "24.3.4rc1"),
        ("24.03.4rc1", "24.3.4rc1"),
        ("  24.03.4 \n", "24.3.4"),
        ("24.12.0a2", "24.12.0a2"),
        ("25.01.3b1", "25.1.3b1"),
        ("24.03.5.dev0", "24.3.5.dev0"),
        ("24.03.0dev0", "24.3.0.dev0"),  # upstream's old tags wrote devN
    ],
)
def test_version_is_stripped_and_canonical(written: str, canonical: str) -> None:
    assert str(parse_version(written, "VERSION")) == canonical


@pytest.mark.parametrize(
    "written, problem",
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        ("24.03.4rc1\n24.03.4rc2", "single line"),
        ("24.3.4rc1", "zero-padded month"),
        ("24.13.0", "zero-padded month"),
        ("v24.03.4", "release tag"),
        ("24.03.4-rc1", "release tag"),
        ("24.03", "release tag"),
        ("24.03.4rc", "release tag"),
        ("24.03.4.post1", "release tag"),
        ("24.03.05", "release tag"),
        ("banana", "not a valid version"),
    ],
)
def test_malformed_version_names_file_and_problem(written: str, problem: str) -> None:
    with pytest.raises(MetadataError, match=problem) as info:
        parse_version(written, "VERSION")
    assert "VERSION" in str(info.value)


@pytest.mark.parametrize(
    "version, status",
    [
        ("24.3.5.dev0", "2 - Pre-Alpha"),
        ("24.3.4a1", "3 - Alpha"),
        ("24.3.4b2", "4 - Beta"),
        ("24.3.4rc1", "4 - Beta"),
        ("24.3.4", "5 - Production/Stable"),
    ],
)
def test_development_status_follows_prerelease_segment(version: str, status: str) -> None:
    assert development_status(Version(version)) == f"Development Status :: {status}"


@pytest.mark.parametrize(
    "constraint, expected",
    [
        ("CPython>=3.12,<3.13", ">=3.12,<3.13"),
        ("CPython==3.12.*", "==3.12.*"),
        (">=3.11,<3.13", ">=3.11,<3.13"),
        ("CPython>=3.12.2,<3.13", ">=3.12.2,<3.13"),
    ],
)
def test_python_requires_from_interpreter_constraints(constraint: str, expected: str) -> None:
    assert python_requires([constraint], "t") == expected


@pytest.mark.parametrize(
    "constraints, problem",
    [
        (["CPython==3.12.*", "CPython==3.11.*"], "exactly one constraint"),
        (["PyPy>=3.9"], "not a CPython constraint"),
        (["CPython>=>3.12"], "not a valid version range"),
        (["CPython<3"], "admits no Python 3 minor version"),
    ],
)
def test_unusable_interpreter_constraints(constraints: list[str], problem: str) -> None:
    with pytest.raises(MetadataError, match=problem):
        python_requires(constraints, "t")


def test_classifiers_count_a_minor_whose_later_patches_qualify() -> None:
    kwargs = compute(interpreter_constraints=["CPython>=3.12.2,<3.13"])
    assert "Programming Language :: Python :: 3.12" in kwargs["classifiers"]


def test_full_kwargs() -> None:
    kwargs = compute()
    assert kwargs["version"] == "24.3.4rc1"
    assert kwargs["python_requires"] == ">=3.12,<3.13"
    assert kwargs["long_description"] == "# backend.ai-kernel\n"
    assert kwargs["long_description_content_type"] == "text/markdown"
    assert kwargs["author"] == DEFAULTS.author
    assert kwargs["project_urls"] == {"Documentation": "https://docs.backend.ai/"}
    assert kwargs["classifiers"][0] == "Development Status :: 4 - Beta"
    assert "Programming Language :: Python :: 3.12" in kwargs["classifiers"]
    assert not any(c.endswith(":: 3.11") or c.endswith(":: 3.13") for c in kwargs["classifiers"])
    assert (
        "License :: OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)"
        in kwargs["classifiers"]
    )


def test_build_file_overrides_defaults_and_adds_classifiers() -> None:
    extra = "Environment :: No Input/Output (Daemon)"
    kwargs = compute({**ARTIFACT, "url": "https://example.org/", "classifiers": [extra]})
    assert kwargs["url"] == "https://example.org/"
    assert kwargs["classifiers"][-1] == extra


@pytest.mark.parametrize("missing", ["name", "description", "license"])
def test_missing_required_field_is_named(missing: str) -> None:
    explicit = {k: v for k, v in ARTIFACT.items() if k != missing}
    with pytest.raises(MetadataError, match=f"must set `{missing}`") as info:
        compute(explicit)
    assert "src/ai/backend/kernel:dist" in str(info.value)


@pytest.mark.parametrize("key", ["version", "python_requires", "long_description"])
def test_computed_fields_cannot_be_set_by_hand(key: str) -> None:
    with pytest.raises(MetadataError, match=f"do not set `{key}`"):
        compute({**ARTIFACT, key: "x"})


def test_other_problems_are_explained() -> None:
    with pytest.raises(MetadataError, match="must start with 'backend.ai-'"):
        compute({**ARTIFACT, "name": "kernel"})
    with pytest.raises(MetadataError, match="unknown license 'GPL'"):
        compute({**ARTIFACT, "license": "GPL"})
    with pytest.raises(MetadataError, match="README.md is empty"):
        compute(readme_text="\n")
    with pytest.raises(MetadataError, match="VERSION holds '24.3.4'"):
        compute(version_text="24.3.4")
