"""User processes: own session per execution, streamed output, stdin fed on demand, group kill.

Each execution runs in a new session, so its whole process tree shares one process group that
``interrupt`` and shutdown can signal.  Its stdin is a pipe owned by the runner: a watcher polls
``/proc/<pid>/task/<tid>/syscall`` of the session's processes, and when one of them blocks in
a read on that (empty) pipe, or in epoll with the pipe registered, it asks the agent for input
and writes the answer, plus a newline, into the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import platform
import signal
import termios
from collections.abc import Mapping, Sequence
from pathlib import Path

from .input_relay import InputBroker
from .protocol import Record, RecordSink

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
PIPE_SIZE = 1024 * 1024
COALESCE_DELAY = 0.001
STDIN_POLL_FIRST = 0.01
STDIN_POLL_MAX = 0.2

_READ_SYSCALLS = {
    # read, pread64, readv, preadv, preadv2
    "x86_64": {0, 17, 19, 295, 327},
    "aarch64": {63, 67, 65, 69, 286},
}.get(platform.machine(), set())
_EPOLL_SYSCALLS = {
    # epoll_wait, epoll_pwait, epoll_pwait2 (event loops such as Node's wait here for stdin)
    "x86_64": {232, 281, 441},
    "aarch64": {22, 441},
}.get(platform.machine(), set())


async def _wait_fd(fd: int, *, writable: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writable:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writable:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _pump(fd: int, record: Record, send: RecordSink) -> None:
    """Forward a pipe until EOF; awaiting each send keeps memory bounded (backpressure)."""
    try:
        while True:
            try:
                chunk = os.read(fd, CHUNK_SIZE)
            except BlockingIOError:
                await _wait_fd(fd)
                continue
            if not chunk:
                return
            await send(record, chunk)
            if len(chunk) < CHUNK_SIZE:
                # Let a busy writer fill the pipe: fewer, larger records cost far less.
                await asyncio.sleep(COALESCE_DELAY)
    finally:
        os.close(fd)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _wait_fd(fd, writable=True)


def session_members(session: int) -> list[int]:
    """Processes of ``session`` that are not zombies."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session ...
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == session and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _epoll_targets(pid: int, epoll_fd: int) -> list[int]:
    with open(f"/proc/{pid}/fdinfo/{epoll_fd}") as f:
        return [int(line.split()[1]) for line in f if line.startswith("tfd:")]


def _waits_on_pipe(pid: int, tid: str, pipe_link: str) -> bool:
    """Whether the thread is blocked reading the pipe, directly or through epoll."""
    with open(f"/proc/{pid}/task/{tid}/syscall") as f:
        fields = f.read().split()
    if not fields[0].isdigit():  # "running", or "-1 ..." outside a system call
        return False
    number, fd = int(fields[0]), int(fields[1], 16)
    if number in _READ_SYSCALLS:
        fds = [fd]
    elif number in _EPOLL_SYSCALLS:
        fds = _epoll_targets(pid, fd)
    else:
        return False
    return any(os.readlink(f"/proc/{pid}/fd/{target}") == pipe_link for target in fds)


def _reads_pipe(pid: int, pipe_link: str) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            if _waits_on_pipe(pid, tid, pipe_link):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _pipe_is_empty(fd: int) -> bool:
    pending = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return int.from_bytes(pending, "little") == 0


def someone_waits_on(session: int, pipe_fd: int) -> bool:
    """Whether a process of ``session`` is blocked reading the (empty) pipe ``pipe_fd``."""
    if not _pipe_is_empty(pipe_fd):
        return False
    pipe_link = f"pipe:[{os.fstat(pipe_fd).st_ino}]"
    return any(_reads_pipe(pid, pipe_link) for pid in session_members(session))


async def _feed_stdin(session: int, pipe_fd: int, inputs: InputBroker) -> None:
    delay = STDIN_POLL_FIRST
    while True:
        await asyncio.sleep(delay)
        if someone_waits_on(session, pipe_fd):
            text = await inputs.ask_line()
            await _write_all(pipe_fd, (text + "\n").encode("utf-8"))
            delay = STDIN_POLL_FIRST
        else:
            delay = min(delay * 2, STDIN_POLL_MAX)


def _make_pipe() -> tuple[int, int]:
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # larger pipes mean fewer, larger records
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    return read_end, write_end


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
        return False
    return True


class ProcessManager:
    """Runs user processes, one session each, and remembers their groups for interrupts."""

    def __init__(self, inputs: InputBroker, interrupt_grace: float) -> None:
        self._inputs = inputs
        self._grace = interrupt_grace
        self._running: set[int] = set()
        self._started: set[int] = set()

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        send: RecordSink,
    ) -> int:
        """Run ``argv`` to completion, streaming its output; returns its exit code."""
        stdin_r, stdin_w = _make_pipe()
        out_r, out_w = _make_pipe()
        err_r, err_w = _make_pipe()
        child_ends = (stdin_r, out_w, err_w)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=stdin_r,
                stdout=out_w,
                stderr=err_w,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as e:
            for fd in (*child_ends, stdin_w, out_r, err_r):
                os.close(fd)
            await send(Record.STDERR, f"cannot run {argv[0]}: {e}\n".encode())
            return 126 if isinstance(e, PermissionError) else 127
        for fd in child_ends:
            os.close(fd)
        for fd in (stdin_w, out_r, err_r):
            os.set_blocking(fd, False)
        self._track(proc.pid)
        feeder = asyncio.create_task(_feed_stdin(proc.pid, stdin_w, self._inputs))
        try:
            await asyncio.gather(
                _pump(out_r, Record.STDOUT, send), _pump(err_r, Record.STDERR, send)
            )
            return await proc.wait()
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            os.close(stdin_w)
            self._running.discard(proc.pid)
            if proc.returncode is None:  # cancelled while running: take the tree down with us
                _signal_group(proc.pid, signal.SIGKILL)

    def _track(self, pgid: int) -> None:
        self._started = {g for g in self._started if _signal_group(g, 0)}
        self._started.add(pgid)
        self._running.add(pgid)

    def interrupt(self) -> bool:
        """SIGINT the running process groups, SIGKILL them if they outlive the grace period."""
        if not self._running:
            return False
        loop = asyncio.get_running_loop()
        for pgid in self._running:
            _signal_group(pgid, signal.SIGINT)
            loop.call_later(self._grace, self._kill_if_running, pgid)
        return True

    def _kill_if_running(self, pgid: int) -> None:
        if pgid in self._running and _signal_group(pgid, signal.SIGKILL):
            log.info("process group %d ignored the interrupt; killed it", pgid)

    async def stop_all(self) -> None:
        """Terminate every process group ever started, including background leftovers."""
        groups = {g for g in self._started if _signal_group(g, signal.SIGTERM)}
        deadline = asyncio.get_running_loop().time() + self._grace
        while groups and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            groups = {g for g in groups if session_members(g)}
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
