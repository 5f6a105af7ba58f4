"""The static-gnu x86_64 platform wheel that `./pants package` built: the agent's view of it.

Its archive is extracted into a fresh directory the way the agent's extractor fills the volume
(`tar xJf`, then a VERSION file), the runner and the helpers are copied onto the mount points
the agent bind-mounts them to, and the runner is driven from the archive's own interpreter.
Without a wheel (the pinned interpreter is unreachable and no stand-in is named) the tests skip;
CI names the stand-in, so there they must run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import ai.backend.helpers
import ai.backend.kernel
from ai.backend.kernel.agent_client import AgentClient
from ai.backend.kernel.protocol import Op, Record
from release.artifacts import parse_artifact, read_contents
from release.verify import check_krunner_environments
from tests.support.processes import local_runner_command, start_runner, stop_process_tree

ARCHIVE_ENV_VAR = "KRUNNER_PYTHON_ARCHIVE_STATIC_GNU_X86_64"
PACKAGE_DIR = "ai/backend/krunner/static_gnu"
SITE_PACKAGES = "lib/python3.12/site-packages"


def built_wheel() -> Path:
    wheels = sorted(
        Path.cwd().glob("backend_ai_krunner_static_gnu-*-py3-none-manylinux_*_x86_64.whl")
    )
    if len(wheels) == 1:
        return wheels[0]
    if os.environ.get(ARCHIVE_ENV_VAR):
        pytest.fail(f"{ARCHIVE_ENV_VAR} is set, but Pants built {len(wheels)} x86_64 wheels")
    pytest.skip(
        "no static-gnu x86_64 wheel: its pinned interpreter is unreachable; name a stand-in with"
        f" {ARCHIVE_ENV_VAR} (python3.12 -m tools.krunner.standin OUT.tar.gz)"
    )


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if platform.machine() != "x86_64":
        pytest.skip(f"the archive is for x86_64, this machine is {platform.machine()}")
    wheel = built_wheel()
    scratch = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(wheel) as archive:
        archive_path = Path(
            archive.extract(f"{PACKAGE_DIR}/krunner-env.static-gnu.x86_64.tar.xz", scratch)
        )
    volume = tmp_path_factory.mktemp("backendai-krunner.v100.x86_64.static-gnu")
    subprocess.run(["tar", "xJf", str(archive_path), "-C", str(volume)], check=True)
    (volume / "VERSION").write_text("100\n")
    for package in (ai.backend.kernel, ai.backend.helpers):
        source = Path(package.__path__[0])
        target = volume / SITE_PACKAGES / "ai" / "backend" / source.name
        assert target.is_dir() and not any(
            target.iterdir()
        ), f"{target} is not an empty mount point"
        shutil.copytree(source, target, dirs_exist_ok=True)
    return volume


def test_release_verify_refuses_it_for_auditwheels_reasons_only() -> None:
    """The SBOM matches the archive and every licence is shipped; a stand-in CPython (CI), linked
    against this machine's glibc and libraries, breaks auditwheel's manylinux policy."""
    wheel = parse_artifact(built_wheel())
    assert wheel is not None
    problems = check_krunner_environments(wheel, read_contents(wheel))
    if not os.environ.get(ARCHIVE_ENV_VAR):  # built from the pinned python-build-standalone
        assert problems == []
        return
    archive = "krunner-env.static-gnu.x86_64.tar.xz: "
    assert problems and all(problem.startswith(archive) for problem in problems), problems
    for problem in problems:
        assert "beyond manylinux_2_26_x86_64 (auditwheel: at most " in problem or (
            "which manylinux_2_26_x86_64 does not allow a system to provide" in problem
        ), problem
    assert any(
        problem.startswith(f"{archive}./bin/python3.12: needs symbol versions GLIBC_2.")
        for problem in problems
    ), problems


def bare_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: everything must come from the volume."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**env, **extra}


def test_interpreter_is_relocated_into_the_volume(volume: Path) -> None:
    probe = (
        "import json, sys, ssl, zlib, sqlite3, zmq, msgpack, jupyter_client\n"
        "print(sys.prefix)\n"
        "print(zmq.__file__)\n"
        "maps = open('/proc/self/maps').read()\n"
        "libs = {line.split()[-1] for line in maps.splitlines() if 'libpython' in line}\n"
        "print(json.dumps(sorted(libs)))\n"
    )
    result = subprocess.run(
        [str(volume / "bin" / "python"), "-s", "-c", probe],
        capture_output=True,
        text=True,
        env=bare_env(),
        check=True,
    )
    prefix, zmq_file, libpython = result.stdout.splitlines()
    assert Path(prefix) == volume
    assert Path(zmq_file).is_relative_to(volume / SITE_PACKAGES)
    # A stand-in from a shared-library CPython must load its libpython from the volume too.
    assert all(Path(p).is_relative_to(volume) for p in json.loads(libpython)), libpython


def test_console_scripts_point_at_the_mounted_volume(volume: Path) -> None:
    script = (volume / "bin" / "jupyter").read_text()
    assert script.splitlines()[0] == "#!/opt/backend.ai/bin/python3"


@pytest.fixture(scope="module")
def agent(volume: Path) -> Iterator[AgentClient]:
    base = Path(tempfile.mkdtemp(prefix="krunner-run-"))
    env = bare_env(TMPDIR=str(base), PYTHONNOUSERSITE="1")
    options = ["--input-socket", str(base / "input.sock"), "--interrupt-grace", "0.5"]
    command = local_runner_command(str(volume / "bin" / "python"), base, env, "git", *options)
    runner = start_runner(command, base)
    client = AgentClient(
        command.in_port, command.out_port, alive=lambda: runner.proc.poll() is None
    )
    try:
        client.first_status(timeout=60)
        yield client
    finally:
        client.close()
        stop_process_tree(runner.proc, grace=20)
        shutil.rmtree(base, ignore_errors=True)


def test_query(agent: AgentClient) -> None:
    result = agent.query("echo out; echo err >&2; exit 3")
    assert (result.stdout, result.stderr, result.exit_code()) == ("out\n", "err\n", 3)


def test_batch(agent: AgentClient) -> None:
    result = agent.batch(clean="", build="", exec="echo $_BACKEND_BATCH_MODE")
    assert result.types() == [Record.CLEAN_FINISHED, Record.BUILD_FINISHED, Record.FINISHED]
    assert result.stdout == "1\n"


def test_input(agent: AgentClient) -> None:
    result = agent.query('read name; echo "hi $name"', inputs=["Ann"])
    assert result.stdout.endswith("hi Ann\n")
    assert Record.WAITING_INPUT in result.types()


def test_interrupt(agent: AgentClient) -> None:
    agent.send(Op.CODE, "echo started; sleep 60")
    agent.collect_until_stdout("started\n")
    agent.send(Op.INTERRUPT, "")
    assert agent.collect(Record.FINISHED).exit_code() != 0
    assert agent.query("echo alive").stdout == "alive\n"
