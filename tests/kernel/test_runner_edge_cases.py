"""Runner edge cases: background leftovers, stdin waits in poll/select, the ops table."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from ai.backend.kernel.execution import ProcessManager, exit_code
from ai.backend.kernel.input_relay import InputBroker
from ai.backend.kernel.languages import LANGUAGES
from ai.backend.kernel.protocol import Op, Record
from ai.backend.kernel.server import Runner, RunnerConfig
from tests.support.processes import free_ports, is_running, process

StartKernel = Callable[..., Any]

# Written out independently of the runner's table, from the kernel's syscall lists.
SYSCALL_NUMBERS = {
    "x86_64": {"poll": 7, "select": 23, "pselect6": 270, "ppoll": 271},
    "aarch64": {"pselect6": 72, "ppoll": 73},  # no poll, no select on aarch64
}

# Waits in one raw system call for stdin among other descriptors, then reads a line.  An idle
# pipe comes first in the set, so that the runner has to look at every entry.
WAITER = """\
import ctypes, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
name, number = sys.argv[1], int(sys.argv[2])
idle, _ = os.pipe()
null = ctypes.c_long(0)


class PollFd(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


if name in ("poll", "ppoll"):
    fds = (PollFd * 2)(PollFd(idle, 1, 0), PollFd(0, 1, 0))
    args = [ctypes.addressof(fds), 2, -1] if name == "poll" else [ctypes.addressof(fds), 2, 0, 0, 8]
else:
    readfds = (ctypes.c_ulong * 16)()
    readfds[0] = 1 | (1 << idle)
    args = [idle + 1, ctypes.addressof(readfds), 0, 0, 0] + ([0] if name == "pselect6" else [])
ready = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
if ready != 1:
    sys.exit(f"{name} returned {ready}, errno {ctypes.get_errno()}")
print("got", sys.stdin.readline().strip())
"""


@pytest.mark.parametrize("syscall", ["poll", "select", "ppoll", "pselect6"])
def test_waiting_in_poll_or_select_gets_input(start_kernel: StartKernel, syscall: str) -> None:
    number = SYSCALL_NUMBERS.get(platform.machine(), {}).get(syscall)
    if number is None:
        pytest.skip(f"{platform.machine()} has no {syscall} system call (or no table here)")
    kernel = start_kernel("git", files={"work/waiter.py": WAITER})
    command = f"{sys.executable} waiter.py {syscall} {number}"
    result = kernel.agent.query(command, inputs=["Ann"])
    assert (result.stdout, result.stderr, result.exit_code()) == ("got Ann\n", "", 0)
    assert result.json_payloads(Record.WAITING_INPUT) == [{"is_password": False}]


def test_background_leftovers_do_not_hold_the_execution(
    start_kernel: StartKernel, wait_until: Callable[..., bool]
) -> None:
    kernel = start_kernel("git")
    # The leftover writes to the execution's stdout once "go" exists, then says so in "wrote".
    leftover = (
        "(while [ ! -e go ]; do sleep 0.05; done; echo late; echo late >&2; touch wrote;"
        " exec sleep 300) & echo $! > leftover.pid; echo started"
    )
    first = kernel.agent.batch(exec=leftover)
    assert (first.stdout, first.exit_code()) == ("started\n", 0)
    leftover_process = process(int((kernel.work_dir / "leftover.pid").read_text()))
    assert leftover_process is not None and is_running(leftover_process)  # as a shell leaves it

    second = kernel.agent.query("touch go; while [ ! -e wrote ]; do sleep 0.05; done; echo 2nd")
    assert (second.stdout, second.stderr) == ("2nd\n", "")  # "late" went to the container log
    assert is_running(leftover_process)

    assert kernel.stop() == 0
    assert wait_until(lambda: not is_running(leftover_process))  # stopped at shutdown


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_exit_code_of_processes(pidfd: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a pidfd, or in a thread where the kernel (or a seccomp filter) refuses pidfds."""
    if not pidfd:

        def refused(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", refused)

    async def exit_codes() -> list[int]:
        exiting = subprocess.Popen(["/bin/sh", "-c", "exit 3"])
        sleeping = subprocess.Popen(["/bin/sh", "-c", "exec sleep 30"])
        waits = [exit_code(p) for p in (exiting, sleeping)]
        await asyncio.sleep(0.2)
        assert not waits[1].done()
        sleeping.send_signal(signal.SIGKILL)
        return await asyncio.wait_for(asyncio.gather(*waits), timeout=10)

    assert asyncio.run(exit_codes()) == [3, -signal.SIGKILL]


def test_no_syscall_table_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def send(record: Record, payload: bytes) -> None:
        raise AssertionError("nothing to send")

    with caplog.at_level(logging.WARNING, logger="ai.backend.kernel.execution"):
        ProcessManager(InputBroker(send), 1.0, machine="x86_64")
        assert caplog.messages == []
        ProcessManager(InputBroker(send), 1.0, machine="riscv64")
    assert len(caplog.messages) == 1
    assert "no system call table for riscv64" in caplog.messages[0]


def _config(tmp_path: Path, runtime_path: str | None = None) -> RunnerConfig:
    in_port, out_port = free_ports(2)
    for name in ("work", "config"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    return RunnerConfig(
        lang=LANGUAGES["git"],
        runtime_path=runtime_path,
        bind="127.0.0.1",
        repl_in_port=in_port,
        repl_out_port=out_port,
        work_dir=tmp_path / "work",
        config_dir=tmp_path / "config",
        service_def_dir=tmp_path / "service-defs",
        input_socket=tmp_path / "in.sock",
        interrupt_grace=0.5,
    )


def test_every_op_has_a_handler(tmp_path: Path) -> None:
    runner = Runner(_config(tmp_path))
    try:
        assert set(runner.dispatch) == set(Op)
        assert runner.queued_ops <= set(runner.dispatch)
    finally:
        asyncio.run(runner.close())


def test_environment_exists_from_construction(tmp_path: Path) -> None:
    runner = Runner(_config(tmp_path, runtime_path="/opt/tool/bin/tool"))
    try:
        assert runner.env["PATH"].startswith(str(tmp_path / "work" / ".local" / "bin"))
        assert "_BACKEND_BATCH_MODE" not in runner.env
        assert runner.batch.exec_env == {**runner.env, "_BACKEND_BATCH_MODE": "1"}
        assert runner.runtime_path == "/opt/tool/bin/tool"
    finally:
        asyncio.run(runner.close())
    default = Runner(_config(tmp_path / "default"))
    try:
        assert default.runtime_path == "/bin/sh"  # the git runtime's only candidate
    finally:
        asyncio.run(default.close())


def _fails_at_once(_: str) -> Coroutine[Any, Any, None]:
    raise RuntimeError("a handler bug before its first await")


async def _fails_later(_: str) -> None:
    raise RuntimeError("a handler bug")


async def _exchange(runner: Runner, ops: list[tuple[Op, str]]) -> list[tuple[bytes, bytes]]:
    """Send ``ops`` (with their payloads) to a started runner; the records up to a status reply
    and clean-finished."""
    context = zmq.asyncio.Context()
    push, pull = context.socket(zmq.PUSH), context.socket(zmq.PULL)
    push.connect(f"tcp://127.0.0.1:{runner.config.repl_in_port}")
    pull.connect(f"tcp://127.0.0.1:{runner.config.repl_out_port}")
    records: list[tuple[bytes, bytes]] = []
    try:
        for op, text in ops:
            await push.send_multipart([op.encode(), text.encode()])
        async with asyncio.timeout(30):  # a dead loop would never answer: fail, do not hang
            while {Record.STATUS.encode(), Record.CLEAN_FINISHED.encode()} - {
                kind for kind, _ in records
            }:
                kind, payload = await pull.recv_multipart()
                records.append((kind, payload))
    finally:
        context.destroy(linger=0)
    return records


async def _run_with_failing_handlers(tmp_path: Path) -> list[tuple[bytes, bytes]]:
    runner = Runner(_config(tmp_path))
    runner.dispatch[Op.EVENT] = _fails_at_once
    runner.dispatch[Op.GET_APPS] = _fails_later
    runner.dispatch[Op.CODE] = _fails_later  # a queued op
    try:
        await runner.start()
        ops = [Op.EVENT, Op.GET_APPS, Op.CODE, Op.STATUS, Op.CLEAN]
        return await _exchange(runner, [(op, "") for op in ops])
    finally:
        await runner.close()


def test_failing_handlers_do_not_stop_the_loops(tmp_path: Path) -> None:
    records = asyncio.run(_run_with_failing_handlers(tmp_path))
    kinds = [kind.decode() for kind, _ in records]
    assert sorted(kinds) == [Record.CLEAN_FINISHED, Record.STATUS]


async def _run_queued_ops(tmp_path: Path) -> tuple[list[str], list[bytes]]:
    runner = Runner(_config(tmp_path))
    steps: list[str] = []

    async def code(payload: str) -> None:
        steps.append(f"start {payload}")
        await asyncio.sleep(0.3 if payload == "slow" else 0)
        steps.append(f"end {payload}")

    runner.dispatch[Op.CODE] = code
    try:
        await runner.start()
        ops = [(Op.CODE, "slow"), (Op.CODE, "next"), (Op.CODE, "last"), (Op.STATUS, ""),
               (Op.CLEAN, "")]  # fmt: skip
        records = await _exchange(runner, ops)
        return steps, [kind for kind, _ in records]
    finally:
        await runner.close()


def test_queued_ops_run_one_at_a_time_in_order(tmp_path: Path) -> None:
    """Each waits for the one queued before it, however long that takes; status does not."""
    steps, kinds = asyncio.run(_run_queued_ops(tmp_path))
    names = ["slow", "next", "last"]
    assert steps == [f"{when} {name}" for name in names for when in ("start", "end")]
    assert kinds == [Record.STATUS.encode(), Record.CLEAN_FINISHED.encode()]
