"""`publish` and `push` against a real index: pypiserver on 127.0.0.1 with an htpasswd file.

The release is the workspace's own kernel, helper and manifest distributions as Pants built
them; the index also serves their third-party dependencies, packed from this test environment
(tests/release/wheelhouse.py), so that the install check installs into a fresh virtualenv and
runs `python -m ai.backend.kernel --help` with no network.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from release.proc import python_module_env
from tests.built_wheels import built_artifacts
from tests.release.conftest import PANTS_TOML, Repo
from tests.release.wheelhouse import pack_wheel, requirement_closure
from tests.support.processes import free_ports, start_process, stop_process_tree, wait_until

PYPISERVER = Path("tests/release/pypiserver.pex")
USER, PASSWORD = "releaser", "correct horse battery staple"
DISTRIBUTIONS = ("backend.ai-kernel", "backend.ai-kernel-helper", "backend.ai-krunner-manifest")
WORKSPACE_VERSION = Path("VERSION").read_text().strip()
CANONICAL = str(Version(WORKSPACE_VERSION))  # in file names


@dataclass
class Index:
    url: str
    packages: Path
    deps: frozenset[str]  # the dependency wheels it was started with

    def state(self) -> dict[str, str]:
        """Every file the index serves, with its sha256."""
        return {p.name: sha256(p) for p in sorted(self.packages.iterdir()) if p.is_file()}

    def release_files(self) -> dict[str, str]:
        return {k: v for k, v in self.state().items() if k not in self.deps}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def dependency_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The third-party distributions the built wheels require (with the kernel's `client`
    extra, which the install check asks for), transitively, as wheels."""
    out = tmp_path_factory.mktemp("wheelhouse")
    requirements = [
        line
        for wheel in Path.cwd().glob("*.whl")
        for line in wheel_metadata(wheel).get_all("Requires-Dist") or ()
        if not canonicalize_name(Requirement(line).name).startswith("backend-ai-")
    ]
    return [pack_wheel(name, out) for name in requirement_closure(requirements, extra="client")]


def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.BytesParser().parsebytes(archive.read(name))


@pytest.fixture
def index(tmp_path: Path, dependency_wheels: list[Path]) -> Iterator[Index]:
    packages = tmp_path / "index"
    packages.mkdir()
    for wheel in dependency_wheels:
        shutil.copy(wheel, packages)
    htpasswd = tmp_path / "htpasswd"
    write_htpasswd = (
        "import sys; from passlib.apache import HtpasswdFile;"
        " f = HtpasswdFile(sys.argv[1], new=True); f.set_password(sys.argv[2], sys.argv[3]);"
        " f.save()"
    )
    env = {"PATH": os.environ["PATH"], "PEX_INTERPRETER": "1"}
    subprocess.run(
        [sys.executable, str(PYPISERVER), "-c", write_htpasswd, str(htpasswd), USER, PASSWORD],
        check=True,
        env=env,
    )
    [port] = free_ports(1)
    argv = [sys.executable, str(PYPISERVER.resolve()), "run", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--authenticate", "update", "--passwords", str(htpasswd)]
    argv += ["--disable-fallback", "--hash-algo", "sha256", str(packages)]
    log = tmp_path / "pypiserver.log"
    server = start_process(argv, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, log=log)
    try:
        assert wait_until(lambda: _accepts(port), timeout=30), log.read_text()
        yield Index(
            f"http://127.0.0.1:{port}/", packages, frozenset(p.name for p in dependency_wheels)
        )
    finally:
        stop_process_tree(server, grace=5)


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def release(repo_root: Path) -> Repo:
    """A workspace of the three distributions at the workspace's VERSION, tagged, with
    dist/release-VERSION holding what Pants built for them."""
    repo = Repo(repo_root)
    repo.root.mkdir()
    repo.git("init", "--quiet", "--initial-branch=main")
    repo.write("pants.toml", PANTS_TOML)
    repo.write("VERSION", WORKSPACE_VERSION + "\n")
    repo.write(".gitignore", "dist/\n")
    repo.write("CHANGELOG.md", "# Changelog\n")
    for name in DISTRIBUTIONS:
        build = f'python_distribution(provides=python_artifact(name="{name}"))\n'
        repo.write(f"src/{name}/BUILD", build)
    repo.commit_all(f"release: {WORKSPACE_VERSION}")
    repo.git("tag", "--annotate", WORKSPACE_VERSION, "-m", f"Release {WORKSPACE_VERSION}")
    dist = repo.root / "dist" / f"release-{WORKSPACE_VERSION}"
    dist.mkdir(parents=True)
    for artifact in built_artifacts(Path.cwd()):
        shutil.copy(artifact, dist)
    return repo


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINE_USERNAME", USER)
    monkeypatch.setenv("TWINE_PASSWORD", PASSWORD)
    monkeypatch.delenv("PIP_NO_INDEX", raising=False)  # the install check reads the index


def release_files(repo: Repo) -> dict[str, str]:
    dist = repo.root / "dist" / f"release-{WORKSPACE_VERSION}"
    return {p.name: sha256(p) for p in sorted(dist.iterdir())}


def publish_args(index: Index, *extra: str) -> list[str]:
    return [
        "publish",
        "--repository-url",
        index.url,
        "--deps-index-url",
        index.url + "simple/",
        *extra,
    ]


def test_publish_uploads_installs_and_a_second_run_changes_nothing(
    release: Repo, index: Index
) -> None:
    result = release.invoke(*publish_args(index))
    assert result.exit_code == 0, result.output
    assert index.release_files() == release_files(release)  # byte for byte
    canonical = index.release_files()
    assert len(canonical) == 2 * len(DISTRIBUTIONS)
    stdout = result.stdout.splitlines()
    for name in canonical:
        assert f"{name} {index.url}packages/{name}" in stdout
    assert stdout[-1].startswith(f"published {WORKSPACE_VERSION}: {len(canonical)} uploaded, 0")
    uploads = [
        line.split()[1] for line in result.stderr.splitlines() if line.startswith("uploaded")
    ]
    # What others pin goes first: the kernel pins nothing of ours; sdist before wheels.
    assert uploads.index(f"backend_ai_kernel-{CANONICAL}.tar.gz") < uploads.index(
        f"backend_ai_kernel-{CANONICAL}-py3-none-any.whl"
    )
    installed = [line for line in result.stderr.splitlines() if line.startswith("installed ")]
    assert len(installed) == len(DISTRIBUTIONS), result.stderr
    assert all(f" from {index.url}packages/" in line for line in installed)
    assert "python -m ai.backend.kernel --help` runs" in result.stderr

    before = index.state()
    again = release.invoke(*publish_args(index))
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1].startswith(
        f"published {WORKSPACE_VERSION}: 0 uploaded, {len(canonical)} already there"
    )
    assert not [line for line in again.stderr.splitlines() if line.startswith("uploaded")]
    assert index.state() == before
    assert PASSWORD not in result.output + again.output


def test_a_publish_killed_after_the_first_file_finishes_on_the_next_run(
    release: Repo, index: Index
) -> None:
    cli = "import sys; from release.cli import cli; cli(sys.argv[1:])"
    command = [sys.executable, "-c", cli, "--root", str(release.root), *publish_args(index)]
    log = release.root.parent / "killed-publish.log"
    publish = start_process(command, cwd=release.root, env=python_module_env(), log=log)
    try:
        assert wait_until(lambda: bool(index.release_files()), timeout=120), log.read_text()
    finally:
        stop_process_tree(publish, sig=signal.SIGKILL, grace=1)
    partial = index.release_files()
    assert 1 <= len(partial) < len(release_files(release)), log.read_text()

    result = release.invoke(*publish_args(index))
    assert result.exit_code == 0, result.output
    skipped = {
        line.split()[1].rstrip(":")
        for line in result.stderr.splitlines()
        if line.startswith("skip ")
    }
    assert skipped == set(partial)
    assert index.release_files() == release_files(release)


def test_a_different_file_of_the_same_name_is_refused_and_nothing_is_uploaded(
    release: Repo, index: Index
) -> None:
    ours = release.root / "dist" / f"release-{WORKSPACE_VERSION}"
    wheel = ours / f"backend_ai_kernel_helper-{CANONICAL}-py3-none-any.whl"
    tampered = index.packages / wheel.name
    shutil.copy(wheel, tampered)
    with zipfile.ZipFile(tampered, "a") as archive:
        archive.writestr("ai/backend/helpers/extra.py", "planted = True\n")
    before = index.state()
    result = release.invoke(*publish_args(index))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {wheel.name} is on {index.url}simple/ with sha256 {sha256(tampered)}, but the"
        f" file here has sha256 {sha256(wheel)}: refusing to upload anything (a version on an"
        " index is never overwritten)"
    )
    assert index.state() == before


def test_wrong_credentials_are_one_line_and_change_nothing(
    release: Repo, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWINE_PASSWORD", "wrong password")
    before = index.state()
    result = release.invoke(*publish_args(index))
    assert result.exit_code == 1
    error = result.stderr.splitlines()[-1]
    assert error.startswith(
        f"Error: uploading backend_ai_kernel-{CANONICAL}.tar.gz to {index.url} failed:"
    )
    assert "403" in error or "401" in error, error
    assert "wrong password" not in result.output
    assert index.state() == before


def test_refuses_unless_head_is_the_tagged_commit_with_a_clean_tree(
    release: Repo, index: Index
) -> None:
    before = index.state()
    release.write("CHANGELOG.md", "# Changelog\n\nedited\n")
    dirty = release.invoke(*publish_args(index))
    assert dirty.output.splitlines()[-1].startswith(
        "Error: the working tree is not clean (1 changed"
    )
    release.commit_all("after the release")
    head = release.git("rev-parse", "HEAD")[:12]
    tagged = release.git("rev-parse", f"{WORKSPACE_VERSION}^{{commit}}")[:12]
    untagged = release.invoke(*publish_args(index))
    assert untagged.exit_code == 1
    assert untagged.output.splitlines()[-1] == (
        f"Error: HEAD ({head}) is not the commit of the tag {WORKSPACE_VERSION} ({tagged});"
        f" check out {WORKSPACE_VERSION} first"
    )
    release.git("tag", "--delete", WORKSPACE_VERSION)
    no_tag = release.invoke(*publish_args(index))
    assert no_tag.output.splitlines()[-1] == (
        f"Error: there is no tag {WORKSPACE_VERSION}; cut or tag the release first"
    )
    assert index.state() == before


def test_dry_run_says_what_it_would_do_and_changes_nothing(release: Repo, index: Index) -> None:
    ours = release.root / "dist" / f"release-{WORKSPACE_VERSION}"
    present = ours / f"backend_ai_kernel-{CANONICAL}.tar.gz"
    shutil.copy(present, index.packages)  # as if an earlier publish had uploaded it
    before = index.state()
    result = release.invoke(*publish_args(index, "--dry-run"))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    url = f"{index.url}packages/{present.name}"
    assert f"skip {present.name}: on the index with the same sha256 ({url})" in lines
    would = [line.split()[2] for line in lines if line.startswith("would upload")]
    assert sorted(would) == sorted(set(release_files(release)) - {present.name})
    assert result.stdout == (
        f"dry run: would upload {len(would)} and skip 1 file(s) of {WORKSPACE_VERSION} to"
        f" {index.url}; nothing changed\n"
    )
    assert index.state() == before


def test_an_index_url_with_credentials_is_refused(release: Repo) -> None:
    result = release.invoke("publish", "--repository-url", f"http://{USER}:secret@127.0.0.1:1/")
    assert result.output == (
        "Error: the index URL carries credentials; give them to twine instead"
        " (TWINE_USERNAME/TWINE_PASSWORD, keyring or ~/.pypirc)\n"
    )


def _bare_remote(repo: Repo, path: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "--bare", str(path)], check=True)
    repo.git("remote", "add", "origin", str(path))


def test_push_sends_the_release_commit_and_the_tag(release: Repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    _bare_remote(release, remote)  # empty: the push brings the commit and the tag
    release.git("config", "branch.main.remote", "origin")
    release.git("config", "branch.main.merge", "refs/heads/main")
    result = release.invoke("push")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"pushed {WORKSPACE_VERSION} to origin\n"
    assert result.stderr == ""  # said once, not again as a log line
    head = release.git("rev-parse", "HEAD")
    show = ["git", "--git-dir", str(remote), "rev-parse"]
    assert (
        subprocess.run(
            [*show, f"{WORKSPACE_VERSION}^{{commit}}"], capture_output=True, text=True
        ).stdout.strip()
        == head
    )
    assert subprocess.run([*show, "main"], capture_output=True, text=True).stdout.strip() == head
    assert release.invoke("push").exit_code == 0  # again: nothing to do, no error


def test_push_refuses_a_remote_tag_at_another_commit(release: Repo, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    _bare_remote(release, remote)
    release.git("push", "--quiet", "origin", "main")
    release.git("branch", "--set-upstream-to", "origin/main")
    # Someone else tagged the version at another commit and pushed it.
    other = Repo(tmp_path / "other")
    subprocess.run(["git", "clone", "--quiet", str(remote), str(other.root)], check=True)
    other.write("elsewhere.txt", "x\n")
    other.commit_all("another commit")
    other.git("tag", "--annotate", WORKSPACE_VERSION, "-m", "theirs")
    other.git("push", "--quiet", "origin", f"refs/tags/{WORKSPACE_VERSION}")
    theirs = other.git("rev-parse", "HEAD")[:12]
    result = release.invoke("push")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: origin already has the tag {WORKSPACE_VERSION} at {theirs}, not at the release"
        f" commit {release.git('rev-parse', 'HEAD')[:12]}: refusing to push\n"
    )
