"""Pants plugin: the `krunner_wheels` target, a krunner package's platform wheels.

`./pants package` builds the target's python_distribution (an sdist only) and hands it to the
builder in tools/krunner (`tools.krunner.cli`), which makes one platform wheel per architecture
whose pinned inputs it can fetch, each carrying its `krunner-env.<distro>.<arch>.tar.xz`.
Skipped platforms are logged, one warning each. The builder runs once per Pants run: it fetches
into and reuses archives from its own cache outside the repository (KRUNNER_CACHE_DIR).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.pex import Pex, PexProcess
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    EnvironmentAwarePackageRequest,
    PackageFieldSet,
)
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import Digest, MergeDigests, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    Dependencies,
    DependenciesRequest,
    FieldSetsPerTarget,
    FieldSetsPerTargetRequest,
    StringField,
    Target,
    Targets,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

logger = logging.getLogger(__name__)

BUILDER = Address("tools/krunner", relative_file_path="cli.py")
INPUTS_FILE = "tools/krunner/inputs.toml"
ARCHES = ("x86_64", "aarch64")
OUT_DIR = "krunner-wheels"
PASSED_ENV = ("PATH", "HOME", "XDG_CACHE_HOME", "KRUNNER_CACHE_DIR", "SOURCE_DATE_EPOCH")
PROXY_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


class KrunnerDistroField(StringField):
    alias = "distro"
    required = True
    help = "The agent's distro key of the archives, as in versions.txt: static-gnu, musllinux_1_2."


class KrunnerWheelsDependencies(Dependencies):
    help = "The krunner package's python_distribution, whose sdist the wheels are built from."


class KrunnerWheelsTarget(Target):
    alias = "krunner_wheels"
    core_fields = (*COMMON_TARGET_FIELDS, KrunnerDistroField, KrunnerWheelsDependencies)
    help = "A krunner package's platform wheels, each carrying its environment archive."


@dataclass(frozen=True)
class KrunnerWheelsFieldSet(PackageFieldSet):
    required_fields = (KrunnerDistroField,)

    distro: KrunnerDistroField
    dependencies: KrunnerWheelsDependencies


def archive_env_vars(distro: str) -> list[str]:
    """`KRUNNER_PYTHON_ARCHIVE_<DISTRO>_<ARCH>`: a local interpreter archive for one platform."""
    return [
        "KRUNNER_PYTHON_ARCHIVE_" + re.sub(r"[^A-Z0-9]+", "_", f"{distro}_{arch}".upper())
        for arch in ARCHES
    ]


async def _sdist(field_set: KrunnerWheelsFieldSet) -> tuple[BuiltPackage, str]:
    targets = await Get(Targets, DependenciesRequest(field_set.dependencies))
    per_target = await Get(
        FieldSetsPerTarget, FieldSetsPerTargetRequest(PackageFieldSet, list(targets))
    )
    packages = [
        await Get(BuiltPackage, EnvironmentAwarePackageRequest(fs)) for fs in per_target.field_sets
    ]
    sdists = [
        (package, artifact.relpath)
        for package in packages
        for artifact in package.artifacts
        if artifact.relpath and artifact.relpath.endswith(".tar.gz")
    ]
    if len(sdists) != 1:
        raise ValueError(
            f"{field_set.address} must depend on one python_distribution building an sdist;"
            f" found {len(sdists)} sdists"
        )
    return sdists[0]


@rule(desc="Build krunner platform wheels", level=LogLevel.DEBUG)
async def package_krunner_wheels(field_set: KrunnerWheelsFieldSet) -> BuiltPackage:
    distro = field_set.distro.value
    assert distro is not None  # a required field
    sdist, sdist_path = await _sdist(field_set)
    builder = await Get(
        Pex,
        PexFromTargetsRequest(
            [BUILDER],
            output_filename="krunner-build.pex",
            internal_only=True,
            main=EntryPoint("tools.krunner.cli", "main"),
        ),
    )
    inputs = await Get(Digest, PathGlobs([INPUTS_FILE]))
    env = await Get(
        EnvironmentVars,
        EnvironmentVarsRequest([*PASSED_ENV, *PROXY_ENV, *archive_env_vars(distro)]),
    )
    result = await Get(
        ProcessResult,
        PexProcess(
            builder,
            argv=["--sdist", sdist_path, "--distro", distro, "--out", OUT_DIR],
            input_digest=await Get(Digest, MergeDigests([sdist.digest, inputs])),
            extra_env=dict(env),
            output_directories=[OUT_DIR],
            description=f"Build the {distro} krunner wheels",
            # Which inputs are reachable, and a local archive's content, may change between runs.
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.DEBUG,
        ),
    )
    for line in result.stdout.decode().splitlines():
        if line.startswith("skipped "):
            logger.warning(f"krunner: {line}")
        else:
            logger.info(f"krunner: {line}")
    wheels = await Get(Snapshot, RemovePrefix(result.output_digest, OUT_DIR))
    return BuiltPackage(wheels.digest, tuple(BuiltPackageArtifact(name) for name in wheels.files))


def rules() -> list[Any]:
    return [*collect_rules(), UnionRule(PackageFieldSet, KrunnerWheelsFieldSet)]


def target_types() -> list[type[Target]]:
    return [KrunnerWheelsTarget]
