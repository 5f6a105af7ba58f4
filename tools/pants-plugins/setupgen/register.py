"""Pants plugin: one VERSION, one Python range, shared metadata and reproducible archives.

Every `python_distribution` in the workspace gets its setup() kwargs from
`setupgen.metadata.compute_setup_kwargs`: the version from the root VERSION file, Requires-Python
from the distribution's interpreter constraints, classifiers, and the README.md next to the
distribution's BUILD file as the long description. Every build also gets the hook in
`setupgen.reproducible_sdist`, so that building a commit twice gives byte-identical archives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import InterpreterConstraintsField
from pants.backend.python.util_rules.package_dists import (
    DistBuildEnvironment,
    DistBuildEnvironmentRequest,
    SetupKwargs,
    SetupKwargsRequest,
)
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    GlobMatchErrorBehavior,
    PathGlobs,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule
from pants.option.option_types import DictOption, StrOption
from pants.option.subsystem import Subsystem

from setupgen import reproducible_sdist
from setupgen.metadata import ProjectDefaults, compute_setup_kwargs

VERSION_FILE = "VERSION"
README = "README.md"


class SetupKwargsDefaults(Subsystem):
    options_scope = "setup-kwargs"
    help = "Metadata shared by every python_distribution unless its BUILD file overrides it."

    author = StrOption(default="Lablup Inc. and contributors", help="The `author` kwarg.")
    url = StrOption(default="https://www.backend.ai/", help="The `url` kwarg.")
    project_urls = DictOption[str](
        default={
            "Documentation": "https://docs.backend.ai/",
            "Source": "https://github.com/lablup/backend.ai",
        },
        help="The `project_urls` kwarg.",
    )


class WorkspaceSetupKwargsRequest(SetupKwargsRequest):
    @classmethod
    def is_applicable(cls, _: Target) -> bool:
        return True


async def _read_one(path: str, origin: str) -> str:
    contents = await Get(
        DigestContents,
        PathGlobs(
            [path],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=origin,
        ),
    )
    return contents[0].content.decode("utf-8")


def _constraints(target: Target, python_setup: PythonSetup) -> Iterable[str]:
    return target[InterpreterConstraintsField].value_or_global_default(python_setup)


@rule
async def workspace_setup_kwargs(
    request: WorkspaceSetupKwargsRequest,
    python_setup: PythonSetup,
    defaults: SetupKwargsDefaults,
) -> SetupKwargs:
    target = request.target
    address = target.address
    readme_path = os.path.join(address.spec_path, README)
    version_text = await _read_one(VERSION_FILE, "the setupgen plugin (the workspace version)")
    readme_text = await _read_one(readme_path, f"the long description of {address}")
    # Errors name the file or target at fault, so they propagate as they are.
    kwargs: dict[str, Any] = compute_setup_kwargs(
        request.explicit_kwargs,
        version_text=version_text,
        version_source=VERSION_FILE,
        interpreter_constraints=_constraints(target, python_setup),
        readme_path=readme_path,
        readme_text=readme_text,
        defaults=ProjectDefaults(defaults.author, defaults.url, defaults.project_urls),
        target=str(address),
    )
    return SetupKwargs(kwargs, address=address)


# The build chroot is sys.path[0] of the PEP 517 build, so a package and a dist-info placed there
# are importable and their entry points visible to setuptools. A package directory (unlike a
# top-level module) stays out of the sdist, whose MANIFEST.in includes `*.py`.
HOOK_PACKAGE = "_backendai_build_hooks"
HOOK_DIST_INFO = f"{HOOK_PACKAGE}-0.dist-info"


def _hook_files() -> list[FileContent]:
    hook_source = Path(reproducible_sdist.__file__).read_bytes()
    return [
        FileContent(f"{HOOK_PACKAGE}/__init__.py", b""),
        FileContent(f"{HOOK_PACKAGE}/reproducible_sdist.py", hook_source),
        FileContent(
            f"{HOOK_DIST_INFO}/METADATA",
            f"Metadata-Version: 2.1\nName: {HOOK_PACKAGE}\nVersion: 0\n".encode(),
        ),
        FileContent(
            f"{HOOK_DIST_INFO}/entry_points.txt",
            b"[setuptools.finalize_distribution_options]\n"
            + f"backendai_reproducible = {HOOK_PACKAGE}.reproducible_sdist:finalize\n".encode(),
        ),
    ]


class ReproducibleBuildRequest(DistBuildEnvironmentRequest):
    @classmethod
    def is_applicable(cls, _: Target) -> bool:
        return True


@rule
async def reproducible_build_environment(_: ReproducibleBuildRequest) -> DistBuildEnvironment:
    digest = await Get(Digest, CreateDigest(_hook_files()))
    return DistBuildEnvironment(extra_build_time_requirements=(), extra_build_time_inputs=digest)


def rules() -> list[Any]:
    return [
        *collect_rules(),
        *SetupKwargsDefaults.rules(),
        UnionRule(SetupKwargsRequest, WorkspaceSetupKwargsRequest),
        UnionRule(DistBuildEnvironmentRequest, ReproducibleBuildRequest),
    ]
