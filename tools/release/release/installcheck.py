"""Installs the release's wheels together into a fresh virtualenv and imports them, offline.

Third-party dependencies (pyzmq, ...) are not in dist/. Without a wheelhouse the wheels are
installed with --no-deps, and an import that fails only because a third-party module is absent
is not counted: what is checked is that the wheels install side by side and that every
first-party module they need is shipped. With `--wheelhouse DIR` the dependencies are resolved
from DIR (still --no-index) and every import must succeed.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import venv
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path, PurePosixPath

from release.artifacts import Artifact, Contents
from release.proc import ModuleCommand, run_unchecked


def check_install(wheels: Mapping[Artifact, Contents], wheelhouses: Sequence[Path]) -> list[str]:
    modules = sorted({m for contents in wheels.values() for m in importable_modules(contents)})
    with tempfile.TemporaryDirectory(prefix="release-verify-") as scratch:
        python, pip = make_venv(Path(scratch) / "venv")
        failure = _pip_install(pip, [w.path for w in wheels], wheelhouses)
        if failure:
            return [f"the wheels do not install together: {failure}"]
        first_party = sorted({m.split(".")[0] for m in modules})
        return _probe_imports(python, modules, first_party, strict=bool(wheelhouses), cwd=scratch)


def importable_modules(contents: Contents) -> set[str]:
    """The outermost regular packages and top-level modules a wheel installs."""
    files = [PurePosixPath(p) for p in contents.data if _is_installed_source(p)]
    packages = {f.parent for f in files if f.name == "__init__.py"}
    outermost = {p for p in packages if p.parent not in packages}
    modules = {f.with_suffix("") for f in files if len(f.parts) == 1 and f.suffix == ".py"}
    return {".".join(p.parts) for p in outermost | modules}


def _is_installed_source(path: str) -> bool:
    top = path.split("/", 1)[0]
    return path.endswith(".py") and not top.endswith((".dist-info", ".data"))


def make_venv(directory: Path) -> tuple[Path, ModuleCommand]:
    """The new environment's interpreter and a pip command that installs into it.

    Seeding pip into every new venv takes seconds, so where this tool has pip, pip's own runner
    script runs it on the new interpreter (as `pip --python` does). Our import path is not
    passed on: pip would count what is on it as installed in the venv.
    """
    own_pip = importlib.util.find_spec("pip")
    venv.EnvBuilder(with_pip=own_pip is None, clear=True).create(directory)
    python = directory / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    if own_pip is None or own_pip.origin is None:
        return python, ModuleCommand([str(python), "-m", "pip"], clean)
    runner = Path(own_pip.origin).parent / "__pip-runner__.py"
    return python, ModuleCommand([str(python), str(runner)], clean)


def _pip_install(
    pip: ModuleCommand, wheels: Sequence[Path], wheelhouses: Sequence[Path]
) -> str | None:
    command = [
        *pip.argv,
        "install",
        "--quiet",
        "--no-index",
        "--disable-pip-version-check",
        "--no-input",
    ]
    if wheelhouses:
        command += [f"--find-links={path}" for path in wheelhouses]
    else:
        command.append("--no-deps")
    result = run_unchecked([*command, *map(str, wheels)], "pip install", env=pip.env)
    if result.returncode == 0:
        return None
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    return errors[-1] if errors else f"pip exited {result.returncode}"


def _probe_imports(
    python: Path, modules: Sequence[str], first_party: Sequence[str], *, strict: bool, cwd: str
) -> list[str]:
    probe = resources.files("release") / "import_probe.py"
    with resources.as_file(probe) as probe_path:
        command = [
            str(python),
            "-I",
            str(probe_path),
            "strict" if strict else "lenient",
            ",".join(first_party),
            *modules,
        ]
        result = run_unchecked(command, "the import check", cwd=Path(cwd))
    problems = [f"import {line}" for line in result.stdout.splitlines() if line.strip()]
    if result.returncode != 0 and not problems:
        problems.append(f"the import check crashed: {result.stderr.strip()[-200:]}")
    return problems
