"""auditwheel's verdict on every ELF file of an unpacked krunner environment.

auditwheel defines what a manylinux/musllinux platform tag promises (symbol versions, the
libraries a system must provide, forbidden symbols, the instruction set) and checks wheels
against it. Its `analyze_wheel_abi` reads only wheel files, so this module applies the
lower-level functions it is built from to a directory. They are not a documented API:
requirements/python-default.txt pins auditwheel exactly, and tools/krunner/README.md lists what
is used here:

- `elfutils.elf_file_filter`, `elfutils.elf_find_versioned_symbols`
- `lddtree.ldd` with `lddtree.ld_paths_from_arg("")`: a file's libraries resolve through its own
  RPATH/RUNPATH only, never through this machine's ld.so.conf, so a library the archive ships
  itself (pyzmq.libs/*) is found inside it, as at run time, and any other is external. ldd never
  resolves libpython (`lddtree.LIBPYTHON_RE`: wheels must not link it); the environment ships it,
  so it counts as found when it is in one of the file's RUNPATH/RPATH directories in the tree
- `policy.WheelPolicies(libc=, arch=, musl_policy=)`, its `get_policy_by_name`,
  `versioned_symbols_policy` and `lddtree_external_references`, and `Architecture.is_superset`

A file keeps a policy when auditwheel would let a wheel holding it carry that tag: no symbol
version above the policy's, no external library outside the policy's allow-list, no symbol the
policy forbids, the policy's libc and architecture, no instruction set beyond the baseline.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from auditwheel.architecture import Architecture
from auditwheel.elfutils import elf_file_filter, elf_find_versioned_symbols
from auditwheel.lddtree import LIBPYTHON_RE, DynamicExecutable, ld_paths_from_arg, ldd
from auditwheel.libc import Libc
from auditwheel.policy import Policy, WheelPolicies
from elftools.common.exceptions import ELFError

_ARCHES = ("x86_64", "aarch64", "i686", "ppc64le", "s390x", "armv7l", "riscv64")


class AuditError(Exception):
    """The platform tag names no policy auditwheel knows."""


def policy_for(platform_tag: str) -> tuple[WheelPolicies, Policy]:
    """auditwheel's policies for the tag's libc and architecture, and the tag's own policy
    (e.g. manylinux_2_26_x86_64, musllinux_1_2_aarch64, or an alias such as
    manylinux2014_x86_64)."""
    arch = next((a for a in _ARCHES if platform_tag.endswith(f"_{a}")), None)
    base = platform_tag.removesuffix(f"_{arch}") if arch else ""
    try:
        if base.startswith("musllinux_"):
            policies = WheelPolicies(libc=Libc.MUSL, arch=Architecture(arch), musl_policy=base)
        elif base.startswith("manylinux"):
            policies = WheelPolicies(libc=Libc.GLIBC, arch=Architecture(arch))
        else:
            raise AuditError(
                f"{platform_tag} is not a manylinux or musllinux platform tag with one of the"
                f" architectures {', '.join(_ARCHES)}"
            )
        return policies, policies.get_policy_by_name(platform_tag)
    except (LookupError, ValueError) as error:
        raise AuditError(f"auditwheel knows no policy {platform_tag}: {error}") from None


def audit_tree(root: Path, platform_tag: str) -> list[str]:
    """One line per way an ELF file under ``root`` breaks the tag's policy, naming the file as
    `./<path under root>`; empty when every file keeps it."""
    policies, target = policy_for(platform_tag)
    ldpaths = ld_paths_from_arg("")
    problems: list[str] = []
    for path, elf in elf_file_filter(_regular_files(root)):
        name = "./" + path.relative_to(root).as_posix()
        versioned: dict[str, set[str]] = defaultdict(set)
        try:
            for library, version in elf_find_versioned_symbols(elf):
                versioned[library].add(version)
            tree = ldd(path, ldpaths=ldpaths)
        except (ELFError, ValueError, KeyError) as error:
            problems.append(f"{name}: auditwheel cannot read this ELF file: {error}")
            continue
        problems += [
            f"{name}: {problem}"
            for problem in _file_problems(tree, versioned, policies, target, root)
        ]
    return problems


def _regular_files(root: Path) -> Iterator[Path]:
    """Every regular file once, sorted; a symlink names a file that is listed anyway."""
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for file in sorted(files):
            path = Path(directory, file)
            if not path.is_symlink() and path.is_file():
                yield path


def _file_problems(
    tree: DynamicExecutable,
    versioned: dict[str, set[str]],
    policies: WheelPolicies,
    target: Policy,
    root: Path,
) -> list[str]:
    problems: list[str] = []
    arch = policies.architecture
    try:
        baseline = tree.platform.baseline_architecture
        extended = tree.platform.extended_architecture
    except ValueError as error:
        return [f"is for an architecture auditwheel does not know: {error}"]
    if baseline != arch.baseline:
        return [f"is built for {baseline.value}, but {target.name} is for {arch.value}"]
    if extended is not None and not arch.is_superset(extended):
        problems.append(
            f"needs the {extended.value} instruction set, beyond the {arch.value} baseline"
            f" {target.name} promises"
        )
    if tree.libc is not None and tree.libc != policies.libc:
        problems.append(
            f"is linked against {tree.libc.value}, but {target.name} is for {policies.libc.value}"
        )
    satisfied = policies.versioned_symbols_policy(versioned)
    if satisfied < target:
        problems.append(
            f"needs symbol versions {', '.join(_beyond(versioned, target))}, beyond"
            f" {target.name} (auditwheel: at most {satisfied.name})"
        )
    reference = policies.lddtree_external_references(tree, root)[target.name]
    for library, realpath in sorted(reference.libs.items()):
        if realpath is None and LIBPYTHON_RE.match(library) and _ships(tree, library, root):
            continue  # ldd never resolves libpython (wheels must not link it); we ship it
        where = "not found in the archive" if realpath is None else f"found at {realpath}"
        problems.append(
            f"needs {library} ({where}), which {target.name} does not allow a system to provide"
        )
    for library, symbols in sorted(reference.blacklist.items()):
        problems.append(
            f"uses {', '.join(sorted(symbols))} of {library}, which {target.name} forbids"
        )
    return problems


def _ships(tree: DynamicExecutable, library: str, root: Path) -> bool:
    """Whether ``library`` is found inside ``root`` through the file's RUNPATH (else RPATH),
    as the dynamic loader would look for it first."""
    for directory in tree.runpath or tree.rpath:
        candidate = Path(directory, library)
        if candidate.is_file() and candidate.resolve().is_relative_to(root.resolve()):
            return True
    return False


def _beyond(versioned: dict[str, set[str]], target: Policy) -> list[str]:
    """The required versions (GLIBC_2.34, GLIBCXX_3.4.30, ...) the target's policy lacks."""
    beyond = set()
    for versions in versioned.values():
        for version in versions:
            family, _, number = version.partition("_")
            if family in target.symbol_versions and number not in target.symbol_versions[family]:
                beyond.add(version)
    return sorted(beyond, key=_version_key)


def _version_key(version: str) -> tuple[str, tuple[int, ...]]:
    family, _, number = version.partition("_")
    return family, tuple(int(part) for part in number.split(".") if part.isdigit())
