"""The floor: the least that any runner written in Python on pyzmq can cost on this machine.

A bare runner in one synchronous loop, with nothing but pyzmq and msgpack: it binds the two
sockets, answers `status` at once, and runs a batch `exec` as ``/bin/sh -c`` with its stdout
relayed in 256 KiB records from a 1 MiB pipe (the runner's own sizes). It has no event loop,
no input, no interrupts, no services and no query mode, so no real runner can do better; an
aim below its figure is out of reach on this machine, whatever the runner does. Its figures
are taken in the same run and the same way as the runners' (start, batch, stream) and in turns
with them (status), and the aims table shows them beside each limit.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.processes import RunnerCommand, free_ports

FLOOR_RUNNER = r"""
import fcntl, json, os, subprocess, sys, time
import msgpack, zmq

started_at = time.monotonic()
in_port, out_port, work_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
context = zmq.Context()
ops, records = context.socket(zmq.PULL), context.socket(zmq.PUSH)
ops.bind(f"tcp://127.0.0.1:{in_port}")
records.bind(f"tcp://127.0.0.1:{out_port}")
status = msgpack.packb({"started_at": started_at})
finished = {b"clean": b"clean-finished", b"build": b"build-finished", b"exec": b"finished"}


def run(command):
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE, cwd=work_dir)
    fd = proc.stdout.fileno()
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    while chunk := os.read(fd, 256 << 10):
        records.send_multipart([b"stdout", chunk], copy=False)
    proc.stdout.close()
    return proc.wait()


while True:
    op, payload = ops.recv_multipart()
    if op == b"status":
        records.send_multipart([b"status", status])
    elif op in finished:
        code = run(payload.decode()) if payload else 0
        records.send_multipart([finished[op], json.dumps({"exitCode": code}).encode()])
"""


def floor_command(python: str, env: dict[str, str], base: Path) -> RunnerCommand:
    """The bare runner, run by ``python`` (which must have pyzmq and msgpack) on free ports."""
    work = base / "work"
    work.mkdir(parents=True, exist_ok=True)
    in_port, out_port = free_ports()
    argv = [python, "-c", FLOOR_RUNNER, str(in_port), str(out_port), str(work)]
    return RunnerCommand("floor", argv, work, dict(env), in_port, out_port)
