"""tools/krunner/audit.py, the auditwheel wrapper, against auditwheel's own wheel analysis.

The real wheel is pyzmq's, the one the python-default resolve installs (for this machine's
platform): its files are packed back into a wheel, which `auditwheel show` would judge, and
unpacked into a directory, which the wrapper judges. Small ELF files built with the C compiler
give the individual reasons.
"""

from __future__ import annotations

import importlib.metadata
import platform
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from auditwheel.wheel_abi import analyze_wheel_abi

from tools.krunner.audit import AuditError, audit_tree, policy_for

MACHINE = platform.machine()


def installed_wheel(distribution: str, out: Path) -> Path:
    """The installed distribution's files packed into a wheel named by its WHEEL tags."""
    dist = importlib.metadata.distribution(distribution)
    files = [f for f in dist.files or () if not f.name.endswith(".pyc")]
    wheel_file = next(f for f in files if f.name == "WHEEL" and f.parent.name.endswith("dist-info"))
    tags = [
        line.split(":", 1)[1].strip()
        for line in wheel_file.read_text().splitlines()
        if line.startswith("Tag:")
    ]
    interpreter, abi = tags[0].split("-")[:2]
    platforms = ".".join(sorted({tag.split("-")[2] for tag in tags}))
    path = out / f"{dist.metadata['Name']}-{dist.version}-{interpreter}-{abi}-{platforms}.whl"
    packed = [f for f in files if f.name != "RECORD" and Path(str(f.locate())).is_file()]
    record = wheel_file.parent / "RECORD"
    with zipfile.ZipFile(path, "w") as wheel:
        for file in packed:
            wheel.write(Path(str(file.locate())), file.as_posix())
        # The installed RECORD lists bytecode that pip wrote; auditwheel reads the RECORD.
        listed = [f"{f.as_posix()},," for f in packed] + [f"{record.as_posix()},,"]
        wheel.writestr(record.as_posix(), "\n".join(listed) + "\n")
    return path


def test_verdicts_agree_with_auditwheels_analysis_of_a_real_wheel(tmp_path: Path) -> None:
    wheel = installed_wheel("pyzmq", tmp_path)
    info = analyze_wheel_abi(
        None, None, wheel, frozenset(), disable_isa_ext_check=False, allow_graft=False
    )
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    verdicts = {
        policy.name: audit_tree(unpacked, policy.name)
        for policy in info.policies
        if policy != info.policies.linux
    }
    expected = {
        policy.name: policy.priority <= info.overall_policy.priority
        for policy in info.policies
        if policy != info.policies.linux
    }
    assert {name: not problems for name, problems in verdicts.items()} == expected
    # Both verdicts occur: pyzmq 27 is built for glibc 2.26, so it keeps some policies only.
    assert set(expected.values()) == {True, False}, info.overall_policy.name


def test_policies_of_the_krunner_tags() -> None:
    for tag, libc in (("manylinux_2_26_x86_64", "glibc"), ("musllinux_1_2_aarch64", "musl")):
        policies, policy = policy_for(tag)
        assert (policy.name, policies.libc.value) == (tag, libc)
    assert policy_for("manylinux2014_x86_64")[1].name == "manylinux_2_17_x86_64"
    for tag in ("manylinux_2_26", "macosx_11_0_arm64", "musllinux_1_x_x86_64"):
        with pytest.raises(AuditError, match=tag):
            policy_for(tag)


def compile_c(tmp_path: Path, source: str, output: Path, *flags: str) -> None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc or gcc) to build ELF files with")
    c_file = tmp_path / f"{output.name}.c"
    c_file.write_text(source)
    subprocess.run([compiler, "-o", str(output), str(c_file), *flags], check=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """lib/libdep.so, and lib/ext.so needing it through RUNPATH $ORIGIN, as pyzmq.libs works."""
    root = tmp_path / "tree"
    (root / "lib").mkdir(parents=True)
    compile_c(
        tmp_path, "int dep(void) { return 1; }\n", root / "lib" / "libdep.so", "-shared", "-fPIC"
    )
    compile_c(
        tmp_path,
        "int dep(void);\nint ext(void) { return dep() + 1; }\n",
        root / "lib" / "ext.so",
        "-shared",
        "-fPIC",
        f"-L{root / 'lib'}",
        "-ldep",
        "-Wl,-rpath,$ORIGIN",
    )
    return root


def test_a_library_shipped_in_the_tree_is_found_there(tree: Path) -> None:
    assert audit_tree(tree, f"manylinux_2_17_{MACHINE}") == []
    (tree / "lib" / "libdep.so").unlink()
    assert audit_tree(tree, f"manylinux_2_17_{MACHINE}") == [
        f"./lib/ext.so: needs libdep.so (not found in the archive), which"
        f" manylinux_2_17_{MACHINE} does not allow a system to provide"
    ]


def test_an_executable_built_here_needs_this_machines_glibc(tmp_path: Path, tree: Path) -> None:
    # glibc 2.34 moved __libc_start_main to a new symbol version: any program linked against
    # glibc 2.34 or later needs it.
    libc, version = platform.libc_ver()
    if libc != "glibc" or tuple(map(int, version.split("."))) < (2, 34):
        pytest.skip(f"this machine's C library is {libc} {version}, not glibc 2.34 or later")
    compile_c(tmp_path, "int main(void) { return 0; }\n", tree / "main")
    assert audit_tree(tree, f"manylinux_2_26_{MACHINE}") == [
        f"./main: needs symbol versions GLIBC_2.34, beyond manylinux_2_26_{MACHINE}"
        f" (auditwheel: at most manylinux_2_34_{MACHINE})"
    ]


def test_libpython_counts_as_shipped_when_found_through_the_runpath(
    tmp_path: Path, tree: Path
) -> None:
    # auditwheel's ldd never resolves libpython (a wheel must not link it); the archive ships it.
    libpython = "libpython3.99.so.1.0"
    flags = ("-shared", "-fPIC", f"-Wl,-soname,{libpython}")
    compile_c(tmp_path, "int py(void) { return 1; }\n", tree / "lib" / libpython, *flags)
    compile_c(
        tmp_path,
        "int py(void);\nint embed(void) { return py(); }\n",
        tree / "embed.so",
        "-shared",
        "-fPIC",
        f"-L{tree / 'lib'}",
        f"-l:{libpython}",
        "-Wl,-rpath,$ORIGIN/lib",
    )
    assert audit_tree(tree, f"manylinux_2_17_{MACHINE}") == []
    (tree / "lib" / libpython).unlink()
    assert audit_tree(tree, f"manylinux_2_17_{MACHINE}") == [
        f"./embed.so: needs {libpython} (not found in the archive), which"
        f" manylinux_2_17_{MACHINE} does not allow a system to provide"
    ]
