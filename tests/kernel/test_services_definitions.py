"""Service definitions, templates and prestart actions, with upstream's defects fixed."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path
from typing import Any

import pytest

from ai.backend.kernel.services.actions import parse_action, run_prestart_actions
from ai.backend.kernel.services.definitions import ServiceDefinition, check_options, load_catalog
from ai.backend.kernel.services.errors import ServiceStartError
from ai.backend.kernel.services.spec import build_argv, build_env
from ai.backend.kernel.services.templates import TemplateError, expand
from tests.support.processes import pid_is_running, wait_until_async
from tests.support.service_programs import write_definitions

# As the jupyter image writes it: a config file body with doubled braces, then the command.
JUPYTER_DEF: dict[str, Any] = {
    "prestart": [
        {
            "action": "write_tempfile",
            # A list of lines, each with its "\n", as the images write it.
            "args": {"body": ["c.ServerApp.port = {ports[0]}\n", "c.ServerApp.settings = {{}}\n"]},
            "ref": "jupyter_cfg",
        }
    ],
    "command": ["{runtime_path}", "-m", "notebook", "--no-browser", "--config", "{jupyter_cfg}"],
    "url_template": "http://{host}:{port}/",
}
VSCODE_DEF: dict[str, Any] = {
    "command": ["code-server", "--bind-addr", "0.0.0.0", "--port", "{ports[0]}"],
    "allowed_arguments": ["--auth"],
    "allowed_envs": ["PASSWORD"],
    "default_arguments": {"--auth": "none"},
}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---- templates ---------------------------------------------------------------------------


def test_template_expands_ports_refs_and_literal_braces() -> None:
    variables = {"ports": [8080, 8081], "out": {"out": "x"}, "runtime_path": "/py"}
    assert expand("{runtime_path}:{ports[0]}:{ports[1]}", variables, where="t") == "/py:8080:8081"
    assert expand("{out[out]}-{{}}-{{x}}", variables, where="t") == "x-{}-{x}"


def test_template_keeps_shell_variables() -> None:
    variables = {"ports": [1]}
    assert expand("$HOME ${HOME} ${{HOME}} $", variables, where="t") == "$HOME ${HOME} ${HOME} $"
    # A known variable in ${...} is still expanded, as upstream did.
    assert expand("${ports[0]}", variables, where="t") == "$1"


def test_template_newer_dialect_and_spaces_inside_braces() -> None:
    variables = {"ports": [55341], "runtime_path": "/py"}
    assert expand("${{ ports[0] }}:${{runtime_path}}", variables, where="t") == "55341:/py"
    assert expand("{ runtime_path } -p { ports[0] }", variables, where="t") == "/py -p 55341"
    # Not a template variable: the literal ${...} of 24.3, for the shell.
    assert expand("${{ HOME }} ${{PATH}}", variables, where="t") == "${ HOME } ${PATH}"
    # An unclosed ${{ is today's `$` and a literal brace.
    assert expand("${{x", variables, where="t") == "${x"


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{nope}", "command[0] of s: unknown variable {nope} (known: ports)"),
        ("a}b", "command[0] of s: a single '}' at position 1 (write '}}' for one)"),
        ("{ports", "command[0] of s: '{' at position 0 is never closed"),
        ("{ports[3]}", "command[0] of s: cannot expand {ports[3]}: IndexError"),
    ],
)
def test_template_errors_say_where(template: str, error: str) -> None:
    with pytest.raises(TemplateError) as e:
        expand(template, {"ports": [1]}, where="command[0] of s")
    assert str(e.value).startswith(error)


# ---- definitions -------------------------------------------------------------------------


def test_real_image_definitions_load(tmp_path: Path) -> None:
    catalog = load_catalog([write_definitions(tmp_path, jupyter=JUPYTER_DEF, vscode=VSCODE_DEF)])
    assert catalog.problems == {}
    assert [d.app_info() for d in catalog.definitions.values()] == [
        {"name": "jupyter", "url_template": "http://{host}:{port}/"},
        {"name": "vscode", "allowed_arguments": ["--auth"], "allowed_envs": ["PASSWORD"]},
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("{", "cannot be read: Expecting property name enclosed in double quotes"),
        ("[]", "expected a JSON object, got list"),
        ({"command": ["x"], "foo": 1}, "unknown field 'foo'"),
        ({"command": 5}, "field 'command': expected a list of strings or a string, got 5"),
        ({"command": " "}, "field 'command': expected a non-empty string, got ' '"),
        ({"command": "x", "shell": ["sh"]}, "field 'shell': expected a program name, got ['sh']"),
        ({}, "field 'command': required (unless 'noop' is true)"),
        ({"command": ["x"], "noop": "yes"}, "field 'noop': expected bool, got 'yes'"),
        ({"command": ["x"], "env": {"A": 1}}, "field 'env': expected an object of strings"),
        ({"command": ["x"], "start_timeout": 0}, "field 'start_timeout': expected seconds > 0"),
        (
            {"command": ["x"], "default_arguments": {"--a": {"b": 1}}},
            "field 'default_arguments', '--a': expected null, a boolean, a number",
        ),
        (
            {"command": ["x"], "prestart": [{"action": "explode"}]},
            "field 'prestart_actions'[0].action: 'explode' is not an action",
        ),
        (
            {"command": ["x"], "prestart": [{"action": "write_file", "args": {"filename": "f"}}]},
            "field 'prestart_actions'[0].args.body: required by write_file",
        ),
        (
            {"command": ["x"], "prestart": [{"action": "mkdir", "args": {"path": 3}}]},
            "field 'prestart_actions'[0].args.path: expected str, got 3",
        ),
        (
            {"command": ["x"], "prestart": [{"action": "log", "args": {"message": "m"}, "x": 1}]},
            "field 'prestart_actions'[0]: unknown field 'x'",
        ),
    ],
)
def test_bad_file_disables_only_that_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: object, problem: str
) -> None:
    directory = write_definitions(tmp_path, bad=body, vscode=VSCODE_DEF)
    with caplog.at_level(logging.ERROR):
        catalog = load_catalog([directory])
    assert list(catalog.definitions) == ["vscode"]
    expected = f"service definition {directory / 'bad.json'}: {problem}"
    assert catalog.problems["bad"].startswith(expected)
    assert f"service bad is disabled: {expected}" in caplog.text


def test_later_directory_wins_and_missing_directory_is_skipped(tmp_path: Path) -> None:
    first = write_definitions(tmp_path / "a", svc={"command": ["first"]})
    second = write_definitions(tmp_path / "b", svc={"command": ["second"]})
    catalog = load_catalog([tmp_path / "missing", first, second])
    assert catalog.definitions["svc"].command == ("second",)


def definition(**fields: Any) -> ServiceDefinition:
    return ServiceDefinition(name="svc", source=Path("svc.json"), **fields)


def test_argv_defaults_updated_by_user_and_typed_values_kept() -> None:
    d = definition(
        command=("prog", "{ports[0]}"),
        allowed_arguments=("--auth", "--n"),
        default_arguments={
            "--auth": "none",
            "--n": 3,
            "--flag": True,
            "--off": False,
            "--l": ["a", "b"],
            "--bare": None,
        },
    )
    argv = build_argv(d.spec(arguments={"--auth": "password"}), {"ports": [9]})
    assert argv == [
        "prog",
        "9",
        "--auth",
        "password",
        "--n",
        "3",
        "--flag",
        "--l",
        "a",
        "b",
        "--bare",
    ]


def test_newer_dialect_string_command_with_shell_and_templated_defaults(tmp_path: Path) -> None:
    body = {
        "command": "exec web --port ${{ ports[0] }} --root { runtime_path }",
        "shell": "sh",
        "default_arguments": {"--marker": "m{ports[0]}", "--l": ["{ports[0]}", "$HOME"]},
        "allowed_arguments": ["--marker"],
    }
    catalog = load_catalog([write_definitions(tmp_path, web=body)])
    assert catalog.problems == {}
    d = catalog.definitions["web"]
    variables = {"ports": [55341], "runtime_path": "/py"}
    assert build_argv(d.spec(), variables) == [
        "sh",
        "-c",
        "exec web --port 55341 --root /py",
        "--marker",
        "m55341",
        "--l",
        "55341",
        "$HOME",
    ]
    # The user's arguments are passed as given, never expanded.
    assert build_argv(d.spec(arguments={"--marker": "{ports[0]}"}), variables)[3:5] == [
        "--marker",
        "{ports[0]}",
    ]


def test_string_command_shell_defaults_to_bash_and_errors_name_the_field() -> None:
    d = definition(command="serve {nope}")
    assert d.shell == "bash"
    with pytest.raises(TemplateError) as e:
        build_argv(d.spec(), {"ports": [1]})
    assert str(e.value).startswith("command of svc: unknown variable {nope}")
    bad_default = definition(command=("p",), default_arguments={"--x": ["ok", "{nope}"]})
    with pytest.raises(TemplateError) as e:
        build_argv(bad_default.spec(), {"ports": [1]})
    assert str(e.value).startswith("default_arguments[--x][1] of svc: unknown variable {nope}")


def test_users_envs_win_over_the_definitions_env_as_under_24_3() -> None:
    d = definition(command=("p",), env={"PASSWORD": "from-definition"})
    env = build_env(d.spec(envs={"PASSWORD": "from-user"}), {"ports": [7]}, {})
    assert env["PASSWORD"] == "from-user"


@pytest.mark.parametrize(
    ("arguments", "envs", "error"),
    [
        ({"--x": "1"}, {}, "argument --x is not allowed for service svc"),
        ({"--auth": {"a": 1}}, {}, "argument --auth of service svc: expected null, a boolean"),
        ({}, {"SECRET": "1"}, "environment variable SECRET is not allowed for service svc"),
        ({}, {"HOME": "/x"}, "environment variable HOME of service svc can't be overwritten"),
        (
            {},
            {"PASSWORD": 5},
            "environment variable PASSWORD of service svc: expected a string, got 5",
        ),
    ],
)
def test_user_options_are_checked(
    arguments: dict[str, Any], envs: dict[str, Any], error: str
) -> None:
    d = definition(command=("p",), allowed_arguments=("--auth",), allowed_envs=("PASSWORD", "HOME"))
    with pytest.raises(ServiceStartError) as e:
        check_options(d, arguments, envs, {"HOME": "/home/work"})
    assert str(e.value).startswith(error)


def test_env_expanded_user_added_and_krunner_libs_dropped() -> None:
    d = definition(command=("p",), env={"PORT_{ports[0]}": "{ports[0]}", "RAW": "$HOME"})
    base = {"LD_LIBRARY_PATH": "/opt/backend.ai/lib:/usr/lib", "HOME": "/h"}
    env = build_env(d.spec(envs={"PASSWORD": "pw"}), {"ports": [7]}, base)
    assert env == {
        "LD_LIBRARY_PATH": "/usr/lib",
        "HOME": "/h",
        "PORT_7": "7",
        "RAW": "$HOME",
        "PASSWORD": "pw",
    }


# ---- prestart actions --------------------------------------------------------------------


def actions(*raw: dict[str, Any]) -> list[Any]:
    return [parse_action(r, f"a[{i}]") for i, r in enumerate(raw)]


def test_write_tempfile_ref_feeds_the_command_and_variables_do_not_leak() -> None:
    variables = {"ports": [8888], "runtime_path": "/py"}
    scope = run(
        run_prestart_actions(actions(*JUPYTER_DEF["prestart"]), variables, service="jupyter")
    )
    assert variables == {"ports": [8888], "runtime_path": "/py"}  # not mutated
    config = Path(str(scope["jupyter_cfg"]))
    assert config.suffix == ".py"
    assert config.read_text() == "c.ServerApp.port = 8888\nc.ServerApp.settings = {}\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    config.unlink()


def test_write_tempfile_takes_one_string_too() -> None:
    steps = actions({"action": "write_tempfile", "args": {"body": "a {ports[0]}"}, "ref": "f"})
    config = Path(str(run(run_prestart_actions(steps, {"ports": [1]}, service="s"))["f"]))
    assert config.read_text() == "a 1"
    config.unlink()


def test_write_file_appends_and_mkdir(tmp_path: Path) -> None:
    target = tmp_path / "d" / "e" / "f.txt"
    steps = actions(
        {"action": "mkdir", "args": {"path": str(target.parent)}},
        {"action": "write_file", "args": {"filename": str(target), "body": ["one"], "mode": "600"}},
        {
            "action": "write_file",
            "args": {
                "filename": str(target),
                "body": ["two {ports[0]}"],
                "append": True,
                "mode": "640",
            },
        },
    )
    run(run_prestart_actions(steps, {"ports": [5]}, service="s"))
    assert target.read_text() == "one\ntwo 5\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_run_command_strips_newline_and_reports_status() -> None:
    steps = actions(
        {
            "action": "run_command",
            "args": {"command": ["sh", "-c", "echo hi; echo err >&2; exit 3"]},
            "ref": "out",
        },
        {"action": "log", "args": {"body": "got {out[out]}"}},
    )
    scope = run(run_prestart_actions(steps, {}, service="s"))
    assert scope["out"] == {"out": "hi", "err": "err", "exit_code": 3}


def test_run_command_timeout_fails_the_start() -> None:
    steps = actions({"action": "run_command", "args": {"command": ["sleep", "30"], "timeout": 0.2}})
    with pytest.raises(ServiceStartError) as e:
        run(run_prestart_actions(steps, {}, service="s"))
    assert str(e.value) == "prestart action 0 (run_command) of s: sleep did not finish in 0.2 s"


def test_a_cancelled_start_stops_its_run_command(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $$ $! > {pids}; wait"
    steps = actions({"action": "run_command", "args": {"command": ["sh", "-c", script]}})

    async def shut_down_while_it_runs() -> None:
        start = asyncio.create_task(run_prestart_actions(steps, {}, service="s"))
        await wait_until_async(pids.exists, "the command starting")
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start

    run(shut_down_while_it_runs())
    assert [pid_is_running(int(pid)) for pid in pids.read_text().split()] == [False, False]


def test_action_template_error_names_the_action() -> None:
    steps = actions({"action": "log", "args": {"message": "{missing}"}})
    with pytest.raises(ServiceStartError) as e:
        run(run_prestart_actions(steps, {}, service="s"))
    assert str(e.value) == (
        "prestart action 0 (log) of s, message: unknown variable {missing} (known: none)"
    )
