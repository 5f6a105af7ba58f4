"""Pants plugin: `tool_pex`, a program from a resolve of its own that tests run as a file.

A test that runs a server from another resolve (the release tests' pypiserver) cannot import it,
and a `pex_binary` in its `runtime_package_dependencies` would also be an output of
`./pants package ::`, which builds only what ships. A `tool_pex` is generated like code instead:
`package` does not see it, and a test that depends on it finds `<BUILD dir>/<name>.pex` in its
sandbox (run it with the test's interpreter).
"""

from __future__ import annotations

from typing import Any

from pants.backend.python.target_types import ConsoleScript
from pants.backend.python.util_rules.pex import Pex
from pants.backend.python.util_rules.pex_from_targets import PexFromTargetsRequest
from pants.core.target_types import FileSourceField
from pants.engine.addresses import Addresses, UnparsedAddressInputs
from pants.engine.fs import AddPrefix, Digest, Snapshot
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    GeneratedSources,
    GenerateSourcesRequest,
    MultipleSourcesField,
    SpecialCasedDependencies,
    StringField,
    Target,
)
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel


class ToolPexSourcesField(MultipleSourcesField):
    # Registered only so that the PEX can be generated like code; it has no files of its own.
    alias = "_sources"
    expected_num_files = 0


class ToolPexRequirementsField(SpecialCasedDependencies):
    alias = "requirements"
    required = True
    help = "The python_requirement targets the PEX holds (one resolve), e.g. ['//reqs:pypiserver']."


class ToolPexScriptField(StringField):
    alias = "script"
    required = True
    help = "The console script the PEX runs, e.g. `pypi-server`."


class ToolPexTarget(Target):
    alias = "tool_pex"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        ToolPexSourcesField,
        ToolPexRequirementsField,
        ToolPexScriptField,
    )
    help = "A PEX of third-party requirements that dependent tests find as a file, never packaged."


class GenerateToolPexRequest(GenerateSourcesRequest):
    input = ToolPexSourcesField
    output = FileSourceField


@rule(desc="Build a tool PEX for tests", level=LogLevel.DEBUG)
async def generate_tool_pex(request: GenerateToolPexRequest) -> GeneratedSources:
    target = request.protocol_target
    requirements = await Get(
        Addresses,
        UnparsedAddressInputs,
        target[ToolPexRequirementsField].to_unparsed_address_inputs(),
    )
    script = target[ToolPexScriptField].value
    assert script is not None  # a required field
    pex = await Get(
        Pex,
        PexFromTargetsRequest(
            requirements,
            output_filename=f"{target.address.target_name}.pex",
            internal_only=False,
            main=ConsoleScript(script),
        ),
    )
    placed = await Get(Digest, AddPrefix(pex.digest, target.address.spec_path))
    return GeneratedSources(await Get(Snapshot, Digest, placed))


def rules() -> list[Any]:
    return [*collect_rules(), UnionRule(GenerateSourcesRequest, GenerateToolPexRequest)]


def target_types() -> list[type[Target]]:
    return [ToolPexTarget]
