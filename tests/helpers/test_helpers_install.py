"""Tests of ai.backend.helpers.install().

The real installs run in fresh interpreters, like the one in a session container: pip must not
touch the test runner's own environment, and that environment (a virtualenv) may have no pip.
pip only sees local wheels written by the tests (PIP_NO_INDEX), so nothing needs the network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import packaging
import pytest
from packaging.requirements import Requirement

import ai.backend.helpers
from ai.backend.helpers import install
from tests.helpers.wheelbuilder import build_wheel

NAME = "bai-helper-test-pkg"
MODULE = "bai_helper_test_pkg"

RunSnippet = Callable[[Path, str], dict[str, Any]]


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("wheelhouse")
    for version in ("1.0", "2.0"):
        build_wheel(directory, NAME, version, MODULE, f'VERSION = "{version}"\n')
    return directory


@pytest.fixture(scope="module")
def pylib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only ai.backend.helpers and packaging, for the fresh interpreters' PYTHONPATH."""
    directory = tmp_path_factory.mktemp("pylib")
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(
        Path(ai.backend.helpers.__file__).parent,
        directory / "ai" / "backend" / "helpers",
        ignore=ignore,
    )
    shutil.copytree(Path(packaging.__file__).parent, directory / "packaging", ignore=ignore)
    return directory


def _clean_environ(home: Path) -> dict[str, str]:
    """The caller's environment without its pip and Python settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _make_venv(path: Path, *options: str) -> Path:
    # ensurepip installs pip from the wheel bundled with CPython: no network needed.
    subprocess.run(
        [sys.executable, "-m", "venv", *options, str(path)],
        check=True,
        env=_clean_environ(path.parent),
    )
    return path / "bin" / "python"


@pytest.fixture(scope="module")
def container_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interpreter that, like a container's, accepts ``pip install --user``.

    A virtualenv that includes the system site-packages keeps the user site-packages enabled.
    """
    return _make_venv(tmp_path_factory.mktemp("container") / "venv", "--system-site-packages")


@pytest.fixture
def isolated_venv_python(tmp_path: Path) -> Path:
    """A plain virtualenv: pip refuses ``--user`` in it."""
    return _make_venv(tmp_path / "venv")


@pytest.fixture
def user_base(tmp_path: Path) -> Path:
    return tmp_path / "userbase"


@pytest.fixture
def run(tmp_path: Path, user_base: Path, wheelhouse: Path, pylib: Path) -> RunSnippet:
    """Run a snippet in a fresh interpreter; return the JSON object its last line prints."""

    def run_snippet(python: Path, code: str) -> dict[str, Any]:
        env = _clean_environ(tmp_path)
        env.update(
            PYTHONPATH=str(pylib),
            PYTHONUSERBASE=str(user_base),
            PIP_NO_INDEX="1",
            PIP_FIND_LINKS=str(wheelhouse),
            PIP_NO_CACHE_DIR="1",
        )
        prelude = "import json, subprocess\nfrom ai.backend.helpers import *\n"
        result = subprocess.run(
            [str(python), "-c", prelude + textwrap.dedent(code)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        output: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
        output["stdout"] = result.stdout
        return output

    return run_snippet


INSTALL_AND_IMPORT = f"""
install("{NAME}==1.0")
import {MODULE}
print(json.dumps({{"version": {MODULE}.VERSION, "file": {MODULE}.__file__}}))
"""


def test_installs_into_user_site_and_imports_in_same_interpreter(
    run: RunSnippet, container_python: Path, user_base: Path
) -> None:
    result = run(container_python, INSTALL_AND_IMPORT)
    assert result["version"] == "1.0"
    assert Path(result["file"]).is_relative_to(user_base)


def test_installs_into_isolated_virtualenv(
    run: RunSnippet, isolated_venv_python: Path, user_base: Path
) -> None:
    result = run(isolated_venv_python, INSTALL_AND_IMPORT)
    assert result["version"] == "1.0"
    assert Path(result["file"]).is_relative_to(isolated_venv_python.parent.parent)
    assert not user_base.exists()


def test_already_satisfied_does_not_run_pip(run: RunSnippet, container_python: Path) -> None:
    run(container_python, INSTALL_AND_IMPORT)
    result = run(container_python, f'install("{NAME}>=1")\nprint("{{}}")')
    assert f"{NAME} 1.0 is already installed." in result["stdout"]
    assert "Requirement already satisfied" not in result["stdout"]


def test_unsatisfied_specifier_installs_a_matching_version(
    run: RunSnippet, container_python: Path
) -> None:
    run(container_python, INSTALL_AND_IMPORT)
    result = run(
        container_python,
        f"""
        import importlib.metadata
        before = importlib.metadata.version("{NAME}")
        install("{NAME}>=2")
        import {MODULE}
        after = importlib.metadata.version("{NAME}")
        print(json.dumps({{"before": before, "after": after, "module": {MODULE}.VERSION}}))
        """,
    )
    assert (result["before"], result["after"], result["module"]) == ("1.0", "2.0", "2.0")


def test_sys_path_afterwards_matches_a_fresh_interpreter(
    run: RunSnippet, container_python: Path
) -> None:
    # The user site-packages must land where start-up puts it, ahead of the base installation's
    # site-packages, so that a newer version installed there is the one imported.
    show_path = "import sys\nprint(json.dumps({'path': sys.path}))"
    after_install = run(container_python, f'install("{NAME}==1.0")\n{show_path}')
    at_startup = run(container_python, show_path)
    assert after_install["path"] == at_startup["path"]


def test_force_install_reinstalls(run: RunSnippet, container_python: Path) -> None:
    run(container_python, INSTALL_AND_IMPORT)
    result = run(container_python, f'install("{NAME}==1.0", force_install=True)\nprint("{{}}")')
    assert f"Successfully installed {NAME}-1.0" in result["stdout"]


def test_failing_install_raises_with_pip_exit_status(
    run: RunSnippet, container_python: Path
) -> None:
    result = run(
        container_python,
        """
        try:
            install("bai-no-such-package")
        except PipInstallError as exc:
            print(json.dumps({
                "status": exc.returncode,
                "message": str(exc),
                "called_process_error": isinstance(exc, subprocess.CalledProcessError),
            }))
        """,
    )
    assert result["status"] == 1
    assert result["called_process_error"]
    assert result["message"] == "pip could not install 'bai-no-such-package': pip exit status 1"


@pytest.mark.parametrize("pkgname", ["", "   ", "requests>>2", "--index-url=http://x", "a b"])
def test_malformed_requirement_raises_value_error(pkgname: str) -> None:
    with pytest.raises(ValueError, match=f"not a valid requirement: {pkgname!r}"):
        install(pkgname)


@pytest.fixture
def pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[Sequence[str]]:
    """Record pip invocations instead of running them; keep sys.path as it was."""
    calls: list[Sequence[str]] = []

    def fake_run(cmd: Sequence[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return calls


def test_satisfied_requirement_in_this_interpreter(
    pip_calls: list[Sequence[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    install("Packaging>=1")
    assert pip_calls == []
    assert capsys.readouterr().out == f"Packaging {packaging.__version__} is already installed.\n"


@pytest.mark.parametrize(
    "pkgname",
    ["packaging>=1000", "packaging[extra]", 'packaging; python_version >= "3"'],
)
def test_requirements_pip_must_judge_go_to_pip(
    pip_calls: list[Sequence[str]], pkgname: str
) -> None:
    install(pkgname)
    [cmd] = pip_calls
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert cmd[-1] == str(Requirement(pkgname))
