"""A developer client that talks to a runner the way the agent does.

    python -m ai.backend.kernel.client run 'print("hi")'
    python -m ai.backend.kernel.client batch --build '*' --exec '*'
    python -m ai.backend.kernel.client interactive
    python -m ai.backend.kernel.client start-service jupyter --port 8080

stdout/stderr records are written raw to the terminal's stdout/stderr, other records as one line
each; input prompts are answered from the terminal.  The exit status is the execution's.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterable
from typing import TextIO

# An optional extra (backend.ai-kernel[client]): containers run the runner without click.
import click  # pants: no-infer-dep
import zmq

from .protocol import Op, Record, decode_exit, decode_status


class Connection:
    def __init__(self, host: str, in_port: int, out_port: int) -> None:
        self._context = zmq.Context()
        self._push = self._context.socket(zmq.PUSH)
        self._pull = self._context.socket(zmq.PULL)
        self._push.setsockopt(zmq.LINGER, 50)
        self._pull.setsockopt(zmq.LINGER, 50)
        self._push.connect(f"tcp://{host}:{in_port}")
        self._pull.connect(f"tcp://{host}:{out_port}")

    def send(self, op: Op, payload: str = "") -> None:
        self._push.send_multipart([op.encode(), payload.encode()])

    def receive(self) -> tuple[str, bytes]:
        record_type, payload = self._pull.recv_multipart()
        return record_type.decode(), payload

    def follow(self, until: Iterable[str]) -> int:
        """Print records until each type in ``until`` arrived once; return the last exit code."""
        remaining = list(until)
        exit_code = 0
        while remaining:
            try:
                record_type, payload = self.receive()
            except KeyboardInterrupt:
                self.send(Op.INTERRUPT)
                click.echo("\n[interrupt sent; press Ctrl-C again to quit]", err=True)
                continue
            self.show(record_type, payload)
            if record_type in remaining:
                remaining.remove(record_type)
                exit_code = decode_exit(payload)
        return exit_code

    def show(self, record_type: str, payload: bytes) -> None:
        if record_type in (Record.STDOUT, Record.STDERR):
            stream = sys.stdout if record_type == Record.STDOUT else sys.stderr
            stream.buffer.write(payload)
            stream.flush()
        elif record_type == Record.WAITING_INPUT:
            is_password = bool(payload and json.loads(payload).get("is_password"))
            self.send(Op.INPUT, getpass.getpass("") if is_password else input())
        else:
            click.echo(f"[{record_type}] {payload.decode(errors='replace')}")


def shell_status(exit_code: int) -> int:
    """Negative codes mean "killed by signal N"; report them the way shells do."""
    return 128 - exit_code if exit_code < 0 else exit_code & 0xFF


@click.group()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--in-port", default=2000, show_default=True, help="the runner's ops port")
@click.option("--out-port", default=2001, show_default=True, help="the runner's records port")
@click.pass_context
def main(ctx: click.Context, host: str, in_port: int, out_port: int) -> None:
    """Drive a Backend.AI kernel runner."""
    ctx.obj = Connection(host, in_port, out_port)


@main.command()
@click.argument("code", required=False)
@click.option("--file", "source", type=click.File("r"), help="read the snippet from a file")
@click.pass_obj
def run(conn: Connection, code: str | None, source: TextIO | None) -> None:
    """Run one query-mode snippet."""
    if source is not None:
        code = source.read()
    if code is None:
        raise click.UsageError("give CODE or --file")
    conn.send(Op.CODE, code)
    sys.exit(shell_status(conn.follow([Record.FINISHED])))


@main.command()
@click.option("--clean", default="", help='"" skips, "*" uses the heuristic')
@click.option("--build", default="", help='"" skips, "*" uses make or the heuristic')
@click.option("--exec", "execute", default="*", show_default=True, help="command or *")
@click.pass_obj
def batch(conn: Connection, clean: str, build: str, execute: str) -> None:
    """Run clean, build and exec as the agent sends them."""
    conn.send(Op.CLEAN, clean)
    conn.send(Op.BUILD, build)
    conn.send(Op.EXEC, execute)
    finished = (Record.CLEAN_FINISHED, Record.BUILD_FINISHED, Record.FINISHED)
    sys.exit(shell_status(conn.follow(finished)))


@main.command()
@click.pass_obj
def interactive(conn: Connection) -> None:
    """Read snippets from the terminal; a line ending with ':' or '\\' continues to a blank line."""
    exit_code = 0
    while True:
        try:
            lines = [input(">>> ")]
            while lines[-1].rstrip().endswith((":", "\\")) or (len(lines) > 1 and lines[-1]):
                lines.append(input("... "))
        except EOFError:
            click.echo()
            sys.exit(shell_status(exit_code))
        conn.send(Op.CODE, "\n".join(lines))
        exit_code = conn.follow([Record.FINISHED])


@main.command()
@click.pass_obj
def status(conn: Connection) -> None:
    """Ask for the runner's status."""
    conn.send(Op.STATUS)
    _, payload = conn.receive()
    click.echo(decode_status(payload))


def _wait_reply(conn: Connection, kind: Record) -> object:
    """The JSON payload of the next ``kind`` record, showing the others as they come."""
    while True:
        record_type, payload = conn.receive()
        if record_type == kind:
            return json.loads(payload)
        conn.show(record_type, payload)


@main.command()
@click.pass_obj
def apps(conn: Connection) -> None:
    """List the services the runner has definitions for."""
    conn.send(Op.GET_APPS)
    click.echo(json.dumps(_wait_reply(conn, Record.APPS_RESULT), indent=2))


def _options(pairs: Iterable[str], *, lists: bool) -> dict[str, object]:
    """``K=V`` pairs; a bare ``K`` is a flag (null), a repeated ``K`` gives a list."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        item: object = value if sep else None
        if lists and key in options and item is not None:
            previous = options[key]
            item = [*(previous if isinstance(previous, list) else [previous]), value]
        options[key] = item
    return options


@main.command("start-service")
@click.argument("name")
@click.option("--port", type=int, required=True, help="the port the service must open")
@click.option("--arg", "args", multiple=True, help="K=V (or K alone) for allowed_arguments")
@click.option("--env", "envs", multiple=True, help="K=V for allowed_envs")
@click.option("--protocol", default="http", show_default=True)
@click.pass_obj
def start_service(
    conn: Connection,
    name: str,
    port: int,
    args: tuple[str, ...],
    envs: tuple[str, ...],
    protocol: str,
) -> None:
    """Start a service; exit 1 if the runner answers `failed`."""
    env_values = _options(envs, lists=False)
    if None in env_values.values():
        raise click.UsageError("--env takes K=V")
    options = {"arguments": _options(args, lists=True), "envs": env_values}
    request = {"name": name, "port": port, "ports": [port], "protocol": protocol}
    conn.send(Op.START_SERVICE, json.dumps({**request, "options": options}))
    reply = _wait_reply(conn, Record.SERVICE_RESULT)
    click.echo(json.dumps(reply))
    sys.exit(1 if isinstance(reply, dict) and reply.get("status") == "failed" else 0)


@main.command("stop-service")
@click.argument("name")
@click.pass_obj
def stop_service(conn: Connection, name: str) -> None:
    """Stop a service and its whole process tree (the runner sends no reply)."""
    conn.send(Op.SHUTDOWN_SERVICE, json.dumps(name))


if __name__ == "__main__":
    main()
