"""Install Python packages from inside a running session.

``install()`` runs pip in a subprocess for the interpreter that calls it, then makes the new
packages importable without restarting that interpreter.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import site
import subprocess
import sys
import sysconfig
from collections.abc import Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = ["PipInstallError", "install"]


class PipInstallError(subprocess.CalledProcessError):
    """pip exited with a non-zero status; ``returncode`` holds that status."""

    def __init__(self, requirement: str, returncode: int, cmd: Sequence[str]) -> None:
        super().__init__(returncode, list(cmd))
        self.requirement = requirement

    def __str__(self) -> str:
        return f"pip could not install {self.requirement!r}: pip exit status {self.returncode}"


def install(pkgname: str, force_install: bool = False) -> None:
    """Install the requirement ``pkgname`` (e.g. ``"requests"`` or ``"requests>=2"``) with pip.

    Does nothing if an installed distribution already satisfies it, unless ``force_install``.
    Outside a virtual environment the package goes to the user site-packages (``pip --user``),
    as the system site-packages of a container image are usually not writable.
    Modules imported before the call keep their old version until the interpreter restarts.

    Raises ValueError for a malformed requirement and PipInstallError if pip fails.
    """
    requirement = _parse_requirement(pkgname)
    if not force_install:
        installed = _satisfying_version(requirement)
        if installed is not None:
            print(f"{requirement.name} {installed} is already installed.")
            return
    pip_args, site_dirs = _install_scheme()
    cmd = [sys.executable, "-m", "pip", "install", *pip_args]
    if force_install:
        cmd.append("--force-reinstall")
    cmd.append(str(requirement))
    # pip writes straight to the inherited file descriptors: keep our buffered output before it.
    sys.stdout.flush()
    sys.stderr.flush()
    returncode = subprocess.run(cmd, check=False).returncode
    if returncode != 0:
        raise PipInstallError(str(requirement), returncode, cmd)
    for site_dir in site_dirs:
        _make_importable(site_dir)
    importlib.invalidate_caches()


def _parse_requirement(pkgname: str) -> Requirement:
    try:
        return Requirement(pkgname)
    except InvalidRequirement as exc:
        raise ValueError(f"not a valid requirement: {pkgname!r} ({exc})") from exc


def _satisfying_version(requirement: Requirement) -> str | None:
    """The installed version if it satisfies ``requirement``; None when pip has to decide.

    Requirements with extras, a URL or a marker are left to pip, which knows how to judge them.
    """
    if requirement.extras or requirement.url or requirement.marker:
        return None
    installed = _installed_version(requirement.name)
    if installed is None:
        return None
    try:
        satisfied = requirement.specifier.contains(Version(installed), prereleases=True)
    except InvalidVersion:
        return None
    return installed if satisfied else None


def _installed_version(name: str) -> str | None:
    """The version of the first distribution on sys.path named ``name``, as imports would see."""
    wanted = canonicalize_name(name)
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"]
        if dist_name is not None and canonicalize_name(dist_name) == wanted:
            return dist.version
    return None


def _install_scheme() -> tuple[list[str], list[str]]:
    """pip's location arguments and the site directories the packages land in.

    pip refuses ``--user`` in a virtual environment that hides the user site-packages; there the
    environment itself is the user's own, so install into it.
    """
    in_virtualenv = sys.prefix != sys.base_prefix
    if in_virtualenv and not site.ENABLE_USER_SITE:
        return [], list(dict.fromkeys(sysconfig.get_path(key) for key in ("purelib", "platlib")))
    return ["--user"], [site.getusersitepackages()]


def _make_importable(site_dir: str) -> None:
    if site_dir not in sys.path:
        # Where a fresh interpreter puts the user site-packages: after a virtual environment's
        # own site-packages, before those of the base installation.
        sys.path.insert(_first_base_site_index(), site_dir)
    # Process the directory's .pth files (the directory itself is now known, so not re-added).
    site.addsitedir(site_dir)


def _first_base_site_index() -> int:
    base_dirs = set(site.getsitepackages([sys.base_prefix, sys.base_exec_prefix]))
    for index, entry in enumerate(sys.path):
        if entry in base_dirs:
            return index
    return len(sys.path)
