"""User processes: own session per execution, streamed output, stdin fed on demand, group kill.

Each execution runs in a new session, so its whole process tree shares one process group that
``interrupt`` and shutdown can signal.  An execution ends when its own process exits, as in a
shell: background processes it leaves behind keep running until shutdown, and what they write
later goes to the runner's stderr (the container log), never into another execution's output.

Its stdin is a pipe owned by the runner: a watcher polls ``/proc/<pid>/task/<tid>/syscall`` of
the session's processes, and when one of them blocks reading that (empty) pipe, in ``read`` or
in ``poll``/``select``/``epoll`` with the pipe among the watched descriptors, it asks the agent
for input and writes the answer, plus a newline, into the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import platform
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .input_relay import InputBroker
from .protocol import Record, RecordSink

log = logging.getLogger(__name__)

CHUNK_SIZE = 256 * 1024
PIPE_SIZE = 1024 * 1024
COALESCE_DELAY = 0.001
STDIN_POLL_FIRST = 0.01
STDIN_POLL_MAX = 0.2

POLLIN = 0x001
POLLRDNORM = 0x040
MAX_WATCHED_FDS = 65536
"""Larger poll/select sets are not inspected (they would mean reading megabytes per check)."""


@dataclass(frozen=True)
class WaitSyscalls:
    """The numbers of the system calls in which a thread can wait to read its stdin."""

    read: frozenset[int]
    """The first argument is the descriptor: read, pread64, readv, preadv, preadv2."""
    epoll: frozenset[int]
    """The first argument is an epoll descriptor: epoll_wait, epoll_pwait, epoll_pwait2."""
    poll: frozenset[int]
    """``(struct pollfd *fds, nfds, ...)``: poll, ppoll."""
    select: frozenset[int]
    """``(nfds, fd_set *readfds, ...)``: select, pselect6."""


WAIT_SYSCALLS = {
    "x86_64": WaitSyscalls(
        read=frozenset({0, 17, 19, 295, 327}),
        epoll=frozenset({232, 281, 441}),
        poll=frozenset({7, 271}),
        select=frozenset({23, 270}),
    ),
    # aarch64 has no poll and no select: its C libraries implement them with ppoll/pselect6.
    "aarch64": WaitSyscalls(
        read=frozenset({63, 67, 65, 69, 286}),
        epoll=frozenset({22, 441}),
        poll=frozenset({73}),
        select=frozenset({72}),
    ),
}
"""Per architecture (``platform.machine()``); both are little-endian, as fd_set parsing assumes."""


async def _wait_fds(
    fds: Iterable[int], *, writable: bool = False, until: asyncio.Future[Any] | None = None
) -> None:
    """Wait until one of ``fds`` is ready, or ``until`` is done."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    watch, unwatch = (
        (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    )

    def wake(_: object = None) -> None:
        if not ready.done():
            ready.set_result(None)

    watched = list(fds)
    for fd in watched:
        watch(fd, wake)
    if until is not None:
        until.add_done_callback(wake)
    try:
        await ready
    finally:
        if until is not None:
            until.remove_done_callback(wake)
        for fd in watched:
            unwatch(fd)


async def _relay(
    outputs: Mapping[int, Record], send: RecordSink, until: asyncio.Future[Any] | None = None
) -> list[int]:
    """Forward pipes until EOF, or until ``until`` is done and they are empty; returns the
    ones still open then.

    Awaiting each send keeps memory bounded (backpressure).  With ``until`` the program's exit:
    all it wrote is in the pipes by then, so what comes later is its leftovers' output.
    """
    pending = dict(outputs)
    while pending:
        idle, short = True, False
        for fd, record in list(pending.items()):
            try:
                chunk = os.read(fd, CHUNK_SIZE)
            except BlockingIOError:
                continue
            idle = False
            if not chunk:
                del pending[fd]
                continue
            await send(record, chunk)
            short = short or len(chunk) < CHUNK_SIZE
        if idle:
            if until is not None and until.done():
                break
            await _wait_fds(pending, until=until)
        elif short:
            # Let a busy writer fill the pipe: fewer, larger records cost far less.
            await asyncio.sleep(COALESCE_DELAY)
    return list(pending)


def exit_code(proc: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """``proc``'s exit code to come: its pidfd watched by the event loop (asyncio's subprocess
    transports cost a batch ``exec`` more than the spawn itself), or where pidfds are missing
    (Linux before 5.3, or a seccomp filter that refuses them) a thread that waits."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:
        return asyncio.ensure_future(asyncio.to_thread(proc.wait))
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(proc.wait())

    def release(_: object) -> None:  # also when the execution is cancelled
        loop.remove_reader(pidfd)
        os.close(pidfd)

    loop.add_reader(pidfd, on_exit)
    exited.add_done_callback(release)
    return exited


async def _to_container_log(_: Record, chunk: bytes) -> None:
    sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.flush()
    await asyncio.sleep(0)  # a leftover that writes without pause must not starve the runner


async def _drain_to_log(fd: int) -> None:
    """Copy leftovers' output to the container log until they all close the pipe."""
    try:
        await _relay({fd: Record.STDOUT}, _to_container_log)
    finally:
        os.close(fd)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _wait_fds([fd], writable=True)


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


def _read_memory(pid: int, address: int, size: int) -> bytes:
    """Bytes of the process's memory (allowed to the runner, which started it)."""
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        data = os.pread(fd, size, address)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"short read of process {pid}'s memory")
    return data


def _poll_targets(pid: int, fds_address: int, nfds: int) -> list[int]:
    """The descriptors a ``poll``/``ppoll`` waits to read (``struct pollfd``: int, short, short)."""
    if not fds_address or not 0 < nfds <= MAX_WATCHED_FDS:
        return []
    entries = struct.iter_unpack("=ihh", _read_memory(pid, fds_address, nfds * 8))
    return [fd for fd, events, _ in entries if events & (POLLIN | POLLRDNORM)]


def _select_targets(pid: int, nfds: int, readfds_address: int) -> list[int]:
    """The descriptors in a ``select``/``pselect6`` read set (a little-endian bitmap of longs)."""
    if not readfds_address or not 0 < nfds <= MAX_WATCHED_FDS:
        return []
    bitmap = _read_memory(pid, readfds_address, (nfds + 63) // 64 * 8)
    bits = int.from_bytes(bitmap, "little") & ((1 << nfds) - 1)
    return [fd for fd in range(bits.bit_length()) if bits >> fd & 1]  # up to the highest set


def _waits_on_pipe(pid: int, tid: str, pipe_link: str, syscalls: WaitSyscalls) -> bool:
    """Whether the thread is blocked reading the pipe, directly or through poll/select/epoll."""
    with open(f"/proc/{pid}/task/{tid}/syscall") as f:
        fields = f.read().split()
    if not fields[0].isdigit():  # "running", or "-1 ..." outside a system call
        return False
    number, args = int(fields[0]), [int(field, 16) for field in fields[1:7]]
    if number in syscalls.read:
        fds = [args[0]]
    elif number in syscalls.epoll:
        fds = _epoll_targets(pid, args[0])
    elif number in syscalls.poll:
        fds = _poll_targets(pid, args[0], args[1])
    elif number in syscalls.select:
        fds = _select_targets(pid, args[0], args[1])
    else:
        return False
    return any(os.readlink(f"/proc/{pid}/fd/{target}") == pipe_link for target in fds)


def _reads_pipe(pid: int, pipe_link: str, syscalls: WaitSyscalls) -> bool:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            if _waits_on_pipe(pid, tid, pipe_link, syscalls):
                return True
        except (OSError, IndexError, ValueError, struct.error):
            continue
    return False


def _pipe_is_empty(fd: int) -> bool:
    pending = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, pending)
    return int.from_bytes(pending, "little") == 0


def someone_waits_on(session: int, pipe_fd: int, syscalls: WaitSyscalls) -> bool:
    """Whether a process of ``session`` is blocked reading the (empty) pipe ``pipe_fd``."""
    if not _pipe_is_empty(pipe_fd):
        return False
    pipe_link = f"pipe:[{os.fstat(pipe_fd).st_ino}]"
    return any(_reads_pipe(pid, pipe_link, syscalls) for pid in session_members(session))


class StdinFeeder:
    """Writes a line of the agent's input into a session's stdin pipe whenever one of its
    processes waits on it, looking more and more rarely while none does. Looking starts after
    ``STDIN_POLL_FIRST`` from a timer, so that a short execution never pays for a task."""

    def __init__(
        self, session: int, pipe_fd: int, inputs: InputBroker, syscalls: WaitSyscalls
    ) -> None:
        self._session, self._pipe_fd, self._inputs = session, pipe_fd, inputs
        self._syscalls = syscalls
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(STDIN_POLL_FIRST, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._feed())

    async def _feed(self) -> None:
        delay = STDIN_POLL_FIRST
        while True:
            if someone_waits_on(self._session, self._pipe_fd, self._syscalls):
                text = await self._inputs.ask_line()
                await _write_all(self._pipe_fd, (text + "\n").encode("utf-8"))
                delay = STDIN_POLL_FIRST
            else:
                delay = min(delay * 2, STDIN_POLL_MAX)
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


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


def signal_session(session: int, sig: int) -> bool:
    """Signal the session's own process group and each member that moved to another group;
    whether there was anything to signal."""
    signalled = _signal_group(session, sig)
    for pid in session_members(session):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            signalled = True
    return signalled


async def terminate_sessions(sessions: Iterable[int], grace: float) -> None:
    """SIGTERM, up to ``grace`` seconds for the sessions to end, then SIGKILL what is left."""
    remaining = {s for s in sessions if signal_session(s, signal.SIGTERM)}
    deadline = asyncio.get_running_loop().time() + grace
    while remaining and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        remaining = {s for s in remaining if session_members(s)}
    for session in remaining:
        signal_session(session, signal.SIGKILL)


class ProcessManager:
    """Runs user processes, one session each, and remembers their groups for interrupts."""

    def __init__(
        self, inputs: InputBroker, interrupt_grace: float, machine: str = platform.machine()
    ) -> None:
        self._inputs = inputs
        self._grace = interrupt_grace
        self._running: set[int] = set()
        self._started: set[int] = set()
        self._drains: set[asyncio.Task[None]] = set()
        self._syscalls = WAIT_SYSCALLS.get(machine)
        if self._syscalls is None:
            log.warning(
                "no system call table for %s: programs waiting for input on stdin will not be"
                " detected (only the input relay and Jupyter can ask for input)",
                machine,
            )

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        send: RecordSink,
    ) -> int:
        """Run ``argv`` until it exits, streaming its output; returns its exit code."""
        stdin_r, stdin_w = _make_pipe()
        out_r, out_w = _make_pipe()
        err_r, err_w = _make_pipe()
        child_ends = (stdin_r, out_w, err_w)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=out_w,
                stderr=err_w,
                env=env,
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
        feeder = self._start_feeder(proc.pid, stdin_w)
        exited = exit_code(proc)
        outputs = {out_r: Record.STDOUT, err_r: Record.STDERR}
        try:
            for fd in await _relay(outputs, send, exited):
                # Still open in a background process: the container log's now.
                del outputs[fd]
                self._drain_later(fd)
            return await exited
        finally:
            exited.cancel()
            if feeder is not None:
                await feeder.stop()
            for fd in (stdin_w, *outputs):
                os.close(fd)
            self._running.discard(proc.pid)
            if proc.returncode is None:  # cancelled while running: take the tree down with us
                _signal_group(proc.pid, signal.SIGKILL)

    def _start_feeder(self, session: int, stdin_w: int) -> StdinFeeder | None:
        if self._syscalls is None:
            return None
        return StdinFeeder(session, stdin_w, self._inputs, self._syscalls)

    def _drain_later(self, fd: int) -> None:
        task = asyncio.create_task(_drain_to_log(fd))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def _track(self, pgid: int) -> None:
        self._started = {g for g in self._started if _signal_group(g, 0)}
        self._started.add(pgid)
        self._running.add(pgid)

    def interrupt(self) -> bool:
        """SIGINT the running process groups; SIGKILL what is left of them after the grace
        period, including background processes that outlive their execution."""
        if not self._running:
            return False
        loop = asyncio.get_running_loop()
        for pgid in self._running:
            _signal_group(pgid, signal.SIGINT)
            loop.call_later(self._grace, self._kill_remains, pgid)
        return True

    def _kill_remains(self, pgid: int) -> None:
        if _signal_group(pgid, signal.SIGKILL):
            log.info("process group %d outlived the interrupt; killed it", pgid)

    async def stop_all(self) -> None:
        """Terminate every process group ever started, including background leftovers."""
        await terminate_sessions(self._started, self._grace)
        for task in list(self._drains):  # e.g. a pipe held open by a process in another session
            task.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)
