"""`verify`: every problem of a dist directory is one line; a correct release passes."""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from release.artifacts import list_artifacts, parse_artifact, read_contents
from release.platform_wheels import (
    NO_REASON,
    declared_wheels,
    missing_wheels,
    skip_reasons,
)
from release.verify import (
    Expectations,
    check_inventory,
    check_krunner_archives,
    check_krunner_environments,
)
from release.versioning import CalVer
from tests.release.conftest import DISTRIBUTIONS, Repo, package_command, python_command
from tests.release.distfactory import Dist, default_files, write_release, write_sdist, write_wheel
from tools.krunner.pins import load_inputs

VERSION = "24.03.4rc1"
RELEASE_DIR = "dist/release-24.03.4rc1"  # verify's default
EXPECTED = Expectations.build(CalVer.parse(VERSION), DISTRIBUTIONS, ">=3.12,<3.13")


def problems_of(repo: Repo, *args: str) -> list[str]:
    result = repo.invoke("verify", *args)
    assert result.exit_code == 1, result.output
    return result.stdout.splitlines()


def test_a_correct_release_passes(repo: Repo) -> None:
    write_release(repo.root / RELEASE_DIR, VERSION, DISTRIBUTIONS)
    result = repo.invoke("verify")
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("3 distributions at 24.3.4rc1 verified\n")


def test_each_problem_is_one_line(repo: Repo) -> None:
    dist = repo.root / RELEASE_DIR
    write_release(dist, VERSION, DISTRIBUTIONS[:2])
    (dist / "backend_ai_kernel_helper-24.3.4rc1.tar.gz").unlink()
    write_wheel(dist, Dist("backend.ai-kernel", "24.03.4a1"))
    broken = Dist(
        "backend.ai-krunner-static-gnu",
        VERSION,
        {"ai/backend/krunner/static_gnu/__init__.py": b"import ai.backend.nowhere\n"},
        requires=["types-six", "backend.ai-kernel>=24.3", "pyzmq>=26"],
        requires_python=">=3.11",
    )
    write_wheel(dist, broken)
    write_sdist(dist, broken)
    assert problems_of(repo) == [
        "backend_ai_kernel-24.3.4a1-py3-none-any.whl: stale artifact at 24.3.4a1, the release is"
        " 24.3.4rc1",
        "backend.ai-kernel-helper: expected one sdist at 24.3.4rc1, found 0",
        *[
            f"backend_ai_krunner_static_gnu-24.3.4rc1{suffix}: {problem}"
            for suffix in ("-py3-none-any.whl", ".tar.gz")
            for problem in (
                "Requires-Python is >=3.11, expected >=3.12,<3.13 (pants.toml)",
                "type stub types-six is a runtime requirement",
                "first-party requirement backend.ai-kernel is >=24.3, expected ==24.3.4rc1",
            )
        ],
        "import ai.backend.krunner.static_gnu: No module named 'ai.backend.nowhere'",
    ]


def test_missing_dist_directory_is_one_line(repo: Repo) -> None:
    result = repo.invoke("verify", str(repo.root / "nowhere"))
    assert result.exit_code == 1
    assert result.output == f"Error: dist directory {repo.root / 'nowhere'} does not exist\n"


def test_an_unreadable_archive_is_one_problem(repo: Repo) -> None:
    dist = repo.root / RELEASE_DIR
    write_release(dist, VERSION, DISTRIBUTIONS)
    wheel = dist / "backend_ai_kernel-24.3.4rc1-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes()[:-40])  # truncated: not a readable zip any more
    [problem] = problems_of(repo)
    assert problem.startswith(f"{wheel}: cannot read the archive")


def test_twine_rejects_unrenderable_descriptions(repo: Repo) -> None:
    class RstDist(Dist):
        def metadata(self) -> bytes:
            head = super().metadata().split(b"Description-Content-Type")[0]
            return head + b"Description-Content-Type: text/x-rst\n\nTitle\n=====\n\n:bad:`x\n"

    dist = repo.root / RELEASE_DIR
    write_release(dist, VERSION, DISTRIBUTIONS)
    write_wheel(dist, RstDist("backend.ai-kernel", VERSION, default_files("kernel", VERSION)))
    [problem] = problems_of(repo)
    assert problem.startswith(
        "backend_ai_kernel-24.3.4rc1-py3-none-any.whl: twine check failed:"
        " `long_description` has syntax errors in markup"
    )


def test_metadata_version_and_sdist_name(tmp_path: Path) -> None:
    write_release(tmp_path, VERSION, DISTRIBUTIONS)
    sdist = tmp_path / "backend_ai_kernel-24.3.4rc1.tar.gz"
    sdist.rename(tmp_path / "backend.ai-kernel-24.3.4rc1.tar.gz")
    artifacts = list_artifacts(tmp_path)
    release, others = EXPECTED.partition(artifacts)
    assert check_inventory(release, others, EXPECTED) == [
        "backend.ai-kernel-24.3.4rc1.tar.gz: not the PEP 625 sdist name"
        " backend_ai_kernel-24.3.4rc1.tar.gz"
    ]


def test_foreign_and_duplicate_wheels(tmp_path: Path) -> None:
    write_release(tmp_path, VERSION, DISTRIBUTIONS)
    write_wheel(tmp_path, Dist("backend.ai-agent", VERSION))
    shutil.copy(
        tmp_path / "backend_ai_kernel-24.3.4rc1-py3-none-any.whl",
        tmp_path / "backend.ai_kernel-24.3.4rc1-py3-none-any.whl",
    )
    artifacts = list_artifacts(tmp_path)
    release, others = EXPECTED.partition(artifacts)
    assert check_inventory(release, others, EXPECTED) == [
        "backend_ai_agent-24.3.4rc1-py3-none-any.whl: not a workspace distribution (expected one"
        " of: backend.ai-kernel, backend.ai-kernel-helper, backend.ai-krunner-static-gnu)",
        "backend.ai-kernel: 2 wheels for py3-none-any:"
        " backend.ai_kernel-24.3.4rc1-py3-none-any.whl,"
        " backend_ai_kernel-24.3.4rc1-py3-none-any.whl",
    ]


@pytest.mark.parametrize(
    ("tag", "files", "problems"),
    [
        ("py3-none-any", {}, []),
        ("py3-none-manylinux2014_x86_64", {"env/krunner-env.static-gnu.x86_64.tar.xz": b"xz"}, []),
        (
            "py3-none-manylinux2014_aarch64.macosx_11_0_arm64",
            {"env/krunner-env.static-gnu.x86_64.tar.xz": b"xz"},
            ["claims aarch64 but has no krunner-env.static-gnu.aarch64.tar.xz"],
        ),
    ],
)
def test_krunner_platform_archives(
    tmp_path: Path, tag: str, files: dict[str, bytes], problems: list[str]
) -> None:
    files = {**files, "ai/backend/krunner/static_gnu/versions.txt": b"static-gnu\n"}
    dist = Dist("backend.ai-krunner-static-gnu", VERSION, files, tag=tag, purelib=False)
    wheel = parse_artifact(write_wheel(tmp_path, dist))
    assert wheel is not None
    assert check_krunner_archives(wheel, read_contents(wheel)) == problems


def test_renamed_platform_wheel(repo: Repo) -> None:
    dist = repo.root / RELEASE_DIR
    write_release(dist, VERSION, DISTRIBUTIONS)
    wheel = dist / "backend_ai_krunner_static_gnu-24.3.4rc1-py3-none-any.whl"
    renamed = wheel.rename(wheel.with_name(wheel.name.replace("any", "manylinux2014_x86_64")))
    assert problems_of(repo) == [
        f"{renamed.name}: WHEEL file tags py3-none-any differ from the file name's",
        f"{renamed.name}: claims a platform but its WHEEL file says Root-Is-Purelib: true",
        f"{renamed.name}: claims x86_64 but has no krunner-env.*.x86_64.tar.xz",
    ]


# click is on the release tool's own import path: the venv's pip must not count it as installed.
@pytest.mark.parametrize(("requirement", "module"), [("pyzmq>=26", "zmq"), ("click", "click")])
def test_third_party_dependencies_need_a_wheelhouse_for_strict_imports(
    repo: Repo, tmp_path: Path, requirement: str, module: str
) -> None:
    dist = repo.root / RELEASE_DIR
    write_release(dist, VERSION, DISTRIBUTIONS)
    needs_dependency = Dist(
        "backend.ai-kernel",
        VERSION,
        {"ai/backend/kernel/__init__.py": f"import {module}\n".encode()},
        requires=[requirement],
    )
    write_wheel(dist, needs_dependency)
    assert repo.invoke("verify").exit_code == 0  # lenient: the module is not first-party
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    [problem] = problems_of(repo, "--wheelhouse", str(wheelhouse))
    assert problem.startswith("the wheels do not install together: ERROR:")
    assert requirement.split(">")[0] in problem


def test_reproducible_rebuild(repo: Repo) -> None:
    write_release(repo.root / RELEASE_DIR, VERSION, DISTRIBUTIONS)
    same = repo.invoke("verify", "--reproducible", "--rebuild-cmd", package_command())
    assert same.exit_code == 0, same.output
    noisy = python_command(
        "import sys, time, pathlib;"
        "pathlib.Path(sys.argv[1], 'backend_ai_kernel-24.3.4rc1.tar.gz')"
        ".write_bytes(str(time.time()).encode())"
    )
    result = repo.invoke("verify", "--reproducible", "--rebuild-cmd", f"{noisy} {{dist}}")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2 * len(DISTRIBUTIONS)
    [mismatch] = [line for line in lines if "no file of this name" not in line]
    assert mismatch.startswith("backend_ai_kernel-24.3.4rc1.tar.gz: not reproducible: sha256")
    assert [p.name for p in (repo.root / "dist").iterdir()] == ["release-24.03.4rc1"]


def test_krunner_archive_built_from_a_standin_fails(tmp_path: Path) -> None:
    # This machine's interpreter links against a glibc far above the manylinux_2_26 promise.
    interpreter = Path(os.path.realpath(sys.executable)).read_bytes()
    files = {
        f"{KRUNNER_DIR}/versions.txt": b"static-gnu\n",
        f"{KRUNNER_DIR}/krunner-python.static-gnu.txt": b"3.12\n",
        f"{KRUNNER_DIR}/krunner-env.static-gnu.x86_64.tar.xz": tar_xz(
            {"./bin/python3": interpreter}
        ),
    }
    tag = "py3-none-manylinux_2_26_x86_64"
    dist = Dist("backend.ai-krunner-static-gnu", VERSION, files, tag=tag, purelib=False)
    wheel = parse_artifact(write_wheel(tmp_path, dist))
    assert wheel is not None
    problems = check_krunner_environments(wheel, read_contents(wheel), load_inputs())
    # auditwheel's reason, for the manylinux_2_26_x86_64 policy.
    assert problems[0].startswith(
        "krunner-env.static-gnu.x86_64.tar.xz: ./bin/python3: needs symbol versions GLIBC_2."
    )
    assert "beyond manylinux_2_26_x86_64 (auditwheel: at most manylinux_2_" in problems[0]
    assert any("lacks the mount point directory" in p for p in problems)
    assert any("installs pyzmq (none), the lock pins" in p for p in problems)


KRUNNER_DIR = "ai/backend/krunner/static_gnu"


def tar_xz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_missing_declared_platform_wheels_are_listed(tmp_path: Path) -> None:
    inputs_file = Path("tools/krunner/inputs.toml")  # the workspace's declarations
    projects = [
        canonicalize_name(n) for n in ("backend.ai-krunner-static-gnu", "backend.ai-krunner-alpine")
    ]
    declared = declared_wheels(inputs_file, "24.3.4rc1", projects)
    built = [
        "backend_ai_krunner_static_gnu-24.3.4rc1-py3-none-manylinux_2_26_x86_64.whl",
        "backend_ai_krunner_alpine-24.3.4rc1-py3-none-musllinux_1_2_x86_64.whl",
        "backend_ai_krunner_alpine-24.3.4rc1-py3-none-musllinux_1_2_aarch64.whl",
    ]
    for name in built:
        (tmp_path / name).write_bytes(b"")
    logged = "12:00:01.00 [WARN] krunner: skipped manylinux_2_26_aarch64 (static-gnu): "
    reasons = skip_reasons([logged + "cannot download X"])
    assert [m.line() for m in missing_wheels(tmp_path, declared, reasons)] == [
        "backend_ai_krunner_static_gnu-24.3.4rc1-py3-none-manylinux_2_26_aarch64.whl"
        " (static-gnu, aarch64): cannot download X"
    ]
    (tmp_path / built[0]).unlink()
    assert [m.reason for m in missing_wheels(tmp_path, declared, {})] == [NO_REASON, NO_REASON]
    # Only the workspace's own krunner distributions; none without the file.
    assert {w.project for w in declared_wheels(inputs_file, "24.3.4rc1", projects[:1])} == {
        projects[0]
    }
    assert declared_wheels(tmp_path / "none.toml", "24.3.4rc1", projects) == []


def test_anything_but_sdists_and_wheels_is_refused(repo: Repo) -> None:
    release = repo.root / RELEASE_DIR
    write_release(release, VERSION, DISTRIBUTIONS)
    (release / "tools.release").mkdir()
    (release / "tools.release" / "release.pex").write_bytes(b"")
    (release / "notes.txt").write_text("x")
    assert problems_of(repo) == [
        f"notes.txt: not an sdist or a wheel; remove it from {release}",
        "tools.release/: a directory; a release directory holds only files",
    ]
