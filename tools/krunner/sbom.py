"""The CycloneDX 1.6 SBOM of a krunner environment, made from what was installed into it.

`build_sbom` reads the unpacked tree (the CPython's version, every distribution's metadata in
site-packages, the auditwheel SBOMs repaired wheels carry) and the digests of the inputs; it
never runs the target's interpreter. Its bytes depend on nothing else: the timestamp is the
build's SOURCE_DATE_EPOCH and the serial number is derived from the input digests.
`check_sbom` holds a built archive's SBOM to the schema and to the archive's contents.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL
from packaging.utils import canonicalize_name, parse_wheel_filename

SBOM_FILE = "krunner-env.cdx.json"  # at the archive's top level and in the wheel's dist-info/sboms
ARCHIVE_MEMBER = f"./{SBOM_FILE}"
CPYTHON_REF = "cpython"
_SERIAL_NAMESPACE = uuid.UUID("6b0c4a52-53b1-4f44-9b8e-7b0d5c1f6a31")
_PY_VERSION = re.compile(rb'#define\s+PY_VERSION\s+"([^"]+)"')
_PROPERTY = "backend.ai:krunner:"


class SbomError(Exception):
    """The tree cannot be described (no CPython version, unreadable metadata)."""


@dataclass(frozen=True)
class InterpreterSource:
    """Where the environment's CPython came from."""

    sha256: str
    origin: str  # the pinned URL, or the environment variable that named a local archive
    release: str | None  # the python-build-standalone release (e.g. 20261110), if one


def cpython_version(root: Path, python_minor: str) -> str:
    """The interpreter's full version, from its include/pythonX.Y/patchlevel.h."""
    header = root / "include" / f"python{python_minor}" / "patchlevel.h"
    try:
        match = _PY_VERSION.search(header.read_bytes())
    except OSError as error:
        raise SbomError(f"cannot read the CPython version: {error}") from None
    if match is None:
        raise SbomError(f"{header.name} of the interpreter defines no PY_VERSION")
    return match[1].decode()


def site_packages(root: Path, python_minor: str) -> Path:
    return root / "lib" / f"python{python_minor}" / "site-packages"


def pypi_ref(name: str, version: str) -> str:
    return PackageURL("pypi", None, canonicalize_name(name), version).to_string()


def build_sbom(
    root: Path,
    python_minor: str,
    name: str,
    interpreter: InterpreterSource,
    wheel_sha256: Mapping[str, str],
    epoch: int,
) -> bytes:
    """The SBOM of the tree ``root`` (named ``name``, e.g. krunner-env.static-gnu.x86_64), as
    indented JSON. ``wheel_sha256`` maps each installed wheel's file name to its sha256."""
    digests = sorted([interpreter.sha256, *wheel_sha256.values()])
    serial = uuid.uuid5(_SERIAL_NAMESPACE, f"{name}\n{python_minor}\n" + "\n".join(digests))
    environment = Component(type=ComponentType.APPLICATION, name=name, bom_ref=name)
    bom = Bom(
        serial_number=serial,
        metadata=BomMetaData(timestamp=datetime.fromtimestamp(epoch, UTC), component=environment),
    )
    cpython = _cpython(root, python_minor, interpreter)
    by_project: dict[str, str] = {
        canonicalize_name(parse_wheel_filename(filename)[0]): sha256
        for filename, sha256 in wheel_sha256.items()
    }
    components = [cpython]
    for dist in importlib.metadata.distributions(path=[str(site_packages(root, python_minor))]):
        components.append(_distribution(dist, by_project))
    for component in components:
        bom.components.add(component)
    bom.register_dependency(environment, components)
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode()


def _cpython(root: Path, python_minor: str, source: InterpreterSource) -> Component:
    version = cpython_version(root, python_minor)
    properties = [Property(name=f"{_PROPERTY}interpreter-origin", value=source.origin)]
    if source.release:
        properties.append(
            Property(name=f"{_PROPERTY}python-build-standalone-release", value=source.release)
        )
    return Component(
        type=ComponentType.APPLICATION,
        name="cpython",
        version=version,
        bom_ref=CPYTHON_REF,
        purl=PackageURL("generic", None, "cpython", version),
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=source.sha256)],
        licenses=[LicenseFactory().make_from_string("PSF-2.0")],
        properties=properties,
    )


def _distribution(
    dist: importlib.metadata.Distribution, wheel_sha256: Mapping[str, str]
) -> Component:
    name, version = dist.metadata.get("Name"), dist.metadata.get("Version")
    if not name or not version:
        where = getattr(dist, "_path", dist)
        raise SbomError(f"{where} has no METADATA with a Name and a Version")
    ref = pypi_ref(name, version)
    sha256 = wheel_sha256.get(canonicalize_name(name))
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=sha256)] if sha256 else []
    properties = [] if sha256 else [Property(name=f"{_PROPERTY}from", value="the interpreter")]
    component = Component(
        type=ComponentType.LIBRARY,
        name=name,
        version=version,
        bom_ref=ref,
        purl=PackageURL.from_string(ref),
        hashes=hashes,
        licenses=_licenses(dist),
        properties=properties,
    )
    for bundled in _bundled(dist, ref):
        component.components.add(bundled)
    return component


def _licenses(dist: importlib.metadata.Distribution) -> list[License]:
    """The metadata's License-Expression, else a one-line License field, else the licence
    classifiers, each as CycloneDX takes it (an SPDX expression or id, or a name)."""
    metadata = dist.metadata
    expression = metadata.get("License-Expression")
    if expression:
        return [LicenseFactory().make_from_string(expression.strip())]
    field = (metadata.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 100 and field.upper() != "UNKNOWN":
        return [LicenseFactory().make_from_string(field)]
    classifiers = [
        c.rsplit("::", 1)[1].strip()
        for c in metadata.get_all("Classifier") or ()
        if c.startswith("License ::") and c.count("::") >= 2
    ]
    return [LicenseFactory().make_with_name(name) for name in sorted(set(classifiers))]


def _bundled(dist: importlib.metadata.Distribution, ref: str) -> list[Component]:
    """The libraries auditwheel grafted into the wheel, from the SBOMs in its dist-info/sboms
    (auditwheel >= 6.5); the wheel itself, their subject, is our component already."""
    found: list[Component] = []
    for file in sorted(dist.files or (), key=str):
        if file.parent.name != "sboms" or not file.name.endswith(".cdx.json"):
            continue
        path = Path(str(file.locate()))
        try:
            document: dict[str, Any] = json.loads(path.read_bytes())
        except (OSError, ValueError) as error:
            raise SbomError(f"cannot read {file}: {error}") from None
        subject = (document.get("metadata") or {}).get("component", {}).get("bom-ref")
        for entry in document.get("components") or ():
            if entry.get("bom-ref") == subject:
                continue
            try:
                found.append(_bundled_component(entry, ref, file.as_posix()))
            except (KeyError, TypeError, ValueError) as error:
                raise SbomError(f"{file} lists a component CycloneDX refuses: {error!r}") from None
    return found


def _bundled_component(entry: dict[str, Any], ref: str, listed_in: str) -> Component:
    purl = entry.get("purl")
    return Component(
        type=ComponentType(entry.get("type", "library")),
        name=entry["name"],
        version=entry.get("version"),
        purl=PackageURL.from_string(purl) if purl else None,
        bom_ref=f"{ref}#{entry.get('bom-ref') or entry['name']}",
        properties=[Property(name=f"{_PROPERTY}listed-in", value=listed_in)],
    )


def check_sbom(
    document: bytes | None,
    wheel_copy: bytes | None,
    installed: Mapping[str, str],
    cpython: str | None,
) -> list[str]:
    """What is wrong with an archive's SBOM: missing, not the wheel's copy, not schema-valid
    CycloneDX 1.6, or listing other distributions (``installed``: canonical name to version)
    or another CPython (``cpython``, the archive's version, if known) than the archive holds."""
    if document is None:
        return [f"has no SBOM {ARCHIVE_MEMBER}"]
    problems = []
    if wheel_copy is None:
        problems.append(f"the wheel has no .dist-info/sboms/{SBOM_FILE}")
    elif wheel_copy != document:
        problems.append(f"the wheel's .dist-info/sboms/{SBOM_FILE} differs from {ARCHIVE_MEMBER}")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(
        document.decode("utf-8", "replace")
    )
    if error is not None:
        return [*problems, f"{ARCHIVE_MEMBER} is not valid CycloneDX 1.6: {error}"]
    parsed: dict[str, Any] = json.loads(document)
    components = parsed.get("components") or []
    listed: dict[str, str | None] = {
        canonicalize_name(c["name"]): c.get("version")
        for c in components
        if str(c.get("purl", "")).startswith("pkg:pypi/")
    }
    for name in sorted(set(installed) | set(listed)):
        if installed.get(name) != listed.get(name):
            problems.append(
                f"{ARCHIVE_MEMBER} lists {name} {listed.get(name) or '(none)'}, the archive"
                f" installs {installed.get(name) or '(none)'}"
            )
    interpreter = [c.get("version") for c in components if c.get("bom-ref") == CPYTHON_REF]
    if interpreter != [cpython] and cpython is not None:
        shown = interpreter[0] if interpreter else "(none)"
        problems.append(f"{ARCHIVE_MEMBER} lists CPython {shown}, the archive holds {cpython}")
    return problems


def wheel_sbom_path(dist_info: str) -> str:
    return f"{dist_info}/sboms/{SBOM_FILE}"


def find_wheel_sbom(files: Mapping[str, bytes]) -> bytes | None:
    """The SBOM a wheel's dist-info carries, given the wheel's files by path."""
    suffix = f".dist-info/sboms/{SBOM_FILE}"
    return next((data for path, data in sorted(files.items()) if path.endswith(suffix)), None)
