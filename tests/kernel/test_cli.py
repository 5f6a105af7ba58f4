"""The command line keeps the agent's form and adds development overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ai.backend.kernel.__main__ import intrinsic_ports, make_config, parse_args


def test_agent_command_line_uses_container_defaults(tmp_path: Path) -> None:
    args = parse_args(["--debug", "python", "/usr/bin/python3"])
    assert (args.debug, args.runtime_type, args.runtime_path) == (
        True,
        "python",
        "/usr/bin/python3",
    )
    assert (args.work_dir, args.config_dir) == (Path("/home/work"), Path("/home/config"))
    args.config_dir = tmp_path  # inside a container, /home/config may hold intrinsic-ports.json
    config = make_config(args)
    assert (config.bind, config.repl_in_port, config.repl_out_port) == ("*", 2000, 2001)
    assert config.work_dir == Path("/home/work")
    assert config.input_socket == Path("/tmp/bai-user-input.sock")
    assert config.service_def_dir == Path("/etc/backend.ai/service-defs")


def test_ports_come_from_intrinsic_ports_json_unless_given(tmp_path: Path) -> None:
    (tmp_path / "intrinsic-ports.json").write_text(json.dumps({"replin": 3000, "replout": 3001}))
    config = make_config(parse_args(["c", "--config-dir", str(tmp_path), "--repl-out-port", "9"]))
    assert (config.repl_in_port, config.repl_out_port) == (3000, 9)


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"replin": "x"}'])
def test_bad_intrinsic_ports_fall_back_to_defaults(tmp_path: Path, content: str) -> None:
    (tmp_path / "intrinsic-ports.json").write_text(content)
    defaults = {"replin": 2000, "replout": 2001, "sshd": 2200, "ttyd": 7681}
    assert intrinsic_ports(tmp_path) == defaults


def test_unknown_runtime_type_is_rejected() -> None:
    with pytest.raises(SystemExit):
        parse_args(["cobol"])
