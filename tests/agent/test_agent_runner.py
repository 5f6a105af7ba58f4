# mypy: disable-error-code="no-untyped-call"
"""The runner driven by the real agent (backend.ai-agent 24.3, 24.9 or 25.5) over its two sockets.

Each test gets a fresh runner subprocess, or shares one if it is marked ``shared_runner``
(see tests/agent/harness.py). Every agent call is bounded: where the agent itself would wait
forever (status, completion), the test fails instead.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent.harness import AGENT_GENERATION, AgentSession, RunResult, new_run_id
from tests.support.processes import processes_matching, still_running, wait_until_async
from tests.support.service_programs import without_image_service_defs

# For tests that leave the runner as they found it: they share one (see tests/agent/harness.py).
shared_runner = pytest.mark.shared_runner

# Agent 24.9.14's defect, not the runner's: on clean-finished/build-finished it ends the run's
# output queue (next_output_queue(), where 24.3 and 25.x call resume_output_queue()) and drops
# every record that arrives before the client's `continue` opens a new one. A step that ends at
# once (a failed build's skipped exec, a skipped step, a prompt, a missing command) loses its
# records, `finished` included, so the `continue` only ever gets empty `continued` answers (the
# harness fails the test after a few of them, AgentSession.execute_results); the published
# 24.9.14 runner fails the same way. It is a race (a slower step's records arrive after the
# `continue`), hence not strict. Under 24.3 and 25.x these tests must pass.
agent_24_9_drops_step_records = pytest.mark.xfail(
    AGENT_GENERATION == (24, 9),
    reason="agent 24.9.14 drops the records that follow clean-finished/build-finished until the"
    " client's `continue` (next_output_queue()); timing-dependent",
    strict=False,
)


def unique_sleep(seconds: int) -> str:
    """A `sleep` command line that no other process has, to find it in /proc."""
    return f"sleep {seconds + (uuid.uuid4().int % 1000) / 1000:.3f}"


# --------------------------------------------------------------------------------------
# status, apps, services, completion
# --------------------------------------------------------------------------------------


@shared_runner
def test_check_status(agent: AgentSession) -> None:
    result = agent.run(agent.kernel.check_status())
    assert isinstance(result, dict)
    assert isinstance(result["started_at"], float)


@without_image_service_defs
def test_kernel_creation_readiness_sequence(agent: AgentSession) -> None:
    """What the agent does at kernel creation: check_status(), then get_service_apps()."""
    assert agent.run(agent.kernel.check_status()) is not None
    apps = agent.run(agent.kernel.get_service_apps())
    assert apps == {"status": "done", "data": []}


@shared_runner
def test_ping(agent: AgentSession) -> None:
    result = agent.run(agent.kernel.ping())
    assert result is not None and "started_at" in result


@shared_runner
@without_image_service_defs
def test_get_apps_returns_empty_list(agent: AgentSession) -> None:
    result = agent.run(agent.kernel.get_service_apps())
    # On no answer the agent returns {"status": "failed", "error": "timeout"} after 10 s.
    assert result == {"status": "done", "data": []}


@shared_runner
def test_start_service_of_an_unknown_service_is_refused_by_the_runner(agent: AgentSession) -> None:
    """`not-a-service` passes the agent's own name check, so the answer is the runner's."""
    result = agent.run(agent.kernel.start_service("not-a-service", {}))
    assert result["status"] == "failed", result
    # "timeout" is what the agent makes up when the runner never answers.
    assert result.get("error") not in (None, "", "timeout", "cancelled"), result


@shared_runner
def test_shutdown_service_is_harmless(agent: AgentSession) -> None:
    agent.run(agent.kernel.shutdown_service("not-a-service"))
    assert agent.query("print('still here')").stdout == "still here\n"


@shared_runner
def test_completion_answers(agent: AgentSession) -> None:
    """The agent waits for `completion` with no timeout: the runner must always answer."""
    agent.query("x_unique_variable_name = 1")
    result = agent.run(agent.kernel.get_completions("x_unique_var", {}), timeout=15)
    assert result["status"] == "finished"
    completions = result["completions"]
    assert isinstance(completions, list)
    assert "x_unique_variable_name" in json.dumps(completions)


@shared_runner
def test_completion_with_nothing_to_complete(agent: AgentSession) -> None:
    result = agent.run(agent.kernel.get_completions("", {}), timeout=15)
    assert isinstance(result["completions"], list)


def test_event_notification_gets_no_reply_and_breaks_nothing(agent: AgentSession) -> None:
    agent.notify_event("oom")
    agent.notify_event("some-future-event", {"x": 1})
    assert agent.query("print(1 + 1)").stdout == "2\n"


# --------------------------------------------------------------------------------------
# query mode
# --------------------------------------------------------------------------------------


@shared_runner
def test_query_print(agent: AgentSession) -> None:
    result = agent.query("print('hi')")
    assert result.status == "finished"
    assert result.exit_code == 0
    assert result.console == [("stdout", "hi\n")]


@shared_runner
def test_query_through_api_v1_aggregation(agent: AgentSession) -> None:
    """Old API clients get separate stdout/stderr/media fields from the same records."""
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    # Any: the v1 fields are optional in the agent's NextResult, and must all be there.
    results: list[Any] = agent.run(
        agent.execute_results(new_run_id(), "query", code, api_version=1)
    )
    assert results[-1]["status"] == "finished"
    assert "".join(r["stdout"] for r in results) == "out\n"
    assert "".join(r["stderr"] for r in results) == "err\n"
    assert [m for r in results for m in r["media"]] == []


@shared_runner
def test_query_keeps_state(agent: AgentSession) -> None:
    assert agent.query("value = 41").exit_code == 0
    result = agent.query("print(value + 1)")
    assert result.stdout == "42\n"


@shared_runner
def test_query_exception_gives_nonzero_exit_code(agent: AgentSession) -> None:
    result = agent.query("1 / 0")
    assert result.status == "finished"
    assert result.exit_code not in (None, 0)
    assert "ZeroDivisionError" in result.stderr
    # the kernel survives
    assert agent.query("print('after')").stdout == "after\n"


@shared_runner
def test_query_stderr(agent: AgentSession) -> None:
    result = agent.query("import sys; sys.stderr.write('oops\\n'); sys.stderr.flush()")
    assert result.exit_code == 0
    assert result.stderr == "oops\n"


@shared_runner
def test_query_html_is_media_the_agent_can_parse(agent: AgentSession) -> None:
    """The agent json.loads every media record (upstream sent raw HTML, which broke it)."""
    result = agent.query("from IPython.display import HTML, display; display(HTML('<b>x</b>'))")
    assert result.exit_code == 0
    assert ("text/html", "<b>x</b>") in result.media()


@shared_runner
def test_query_image_is_data_uri(agent: AgentSession) -> None:
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
        "rkJggg=="
    )
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode({png!r})))"
    )
    result = agent.query(code)
    assert result.exit_code == 0
    media = result.media()
    assert media, result.console
    mime, data = media[0]
    assert mime == "image/png"
    assert data.startswith("data:image/png;base64,")


def test_query_input_round_trip(agent: AgentSession) -> None:
    run_id = new_run_id()
    first = agent.execute(run_id, "query", "name = input('Name: ')\nprint('hello', name)")
    assert first.status == "waiting-input"
    assert first.options is not None and first.options.get("is_password") is False
    assert "Name: " in first.stdout
    second = agent.execute(run_id, "input", "Alice")
    assert second.status == "finished"
    assert second.exit_code == 0
    assert "hello Alice" in second.stdout


def test_query_password_input(agent: AgentSession) -> None:
    run_id = new_run_id()
    first = agent.execute(run_id, "query", "import getpass\npw = getpass.getpass('PW: ')")
    assert first.status == "waiting-input"
    assert first.options is not None and first.options.get("is_password") is True
    second = agent.execute(run_id, "input", "s3cret")
    assert second.status == "finished"
    assert agent.query("print(len(pw))").stdout == "6\n"


@shared_runner
def test_query_large_output_through_agent(agent: AgentSession) -> None:
    result = agent.query("print('가나다라마바사' * 100000)", timeout=60)
    assert result.exit_code == 0
    assert result.stdout == "가나다라마바사" * 100000 + "\n"


def test_interrupt_query(agent: AgentSession, tmp_path: Path) -> None:
    started = tmp_path / "started"
    code = f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(60)"

    async def scenario() -> RunResult:
        task = asyncio.ensure_future(agent.execute_until_status(new_run_id(), "query", code))
        await wait_until_async(started.exists, "the snippet starting")
        assert not task.done(), "sleep(60) finished early"
        assert await agent.kernel.interrupt_kernel() == {"status": "finished"}
        return await task

    # Bounded below the snippet's 60 s: only the interrupt can end it in time.
    result = agent.run(scenario(), timeout=40)
    assert result.status == "finished"
    assert result.exit_code not in (None, 0)
    assert "KeyboardInterrupt" in result.stderr
    assert agent.query("print('alive')").stdout == "alive\n"


# --------------------------------------------------------------------------------------
# batch mode
# --------------------------------------------------------------------------------------


@shared_runner
@agent_24_9_drops_step_records
def test_batch_clean_build_exec(agent: AgentSession) -> None:
    name = f"agent-test-{uuid.uuid4().hex[:8]}.txt"
    _, steps = agent.batch(
        f"rm -f {name}; echo cleaned",
        f"echo built > {name}; echo building",
        f'cat {name}; echo "batch=$_BACKEND_BATCH_MODE"; rm -f {name}',
    )
    assert [s.status for s in steps] == ["clean-finished", "build-finished", "finished"]
    assert [s.exit_code for s in steps] == [0, 0, 0]
    assert steps[0].stdout == "cleaned\n"
    assert steps[1].stdout == "building\n"
    assert steps[2].stdout == "built\nbatch=1\n"


@shared_runner
@agent_24_9_drops_step_records
def test_batch_exec_exit_code_and_stderr(agent: AgentSession) -> None:
    _, steps = agent.batch("", "", "echo bad >&2; exit 7")
    assert steps[-1].status == "finished"
    assert steps[-1].exit_code == 7
    assert steps[-1].stderr == "bad\n"


@shared_runner
@agent_24_9_drops_step_records
def test_batch_skipped_steps_still_finish(agent: AgentSession) -> None:
    _, steps = agent.batch("", "", "")
    assert [(s.status, s.exit_code) for s in steps] == [
        ("clean-finished", 0),
        ("build-finished", 0),
        ("finished", 0),
    ]


@shared_runner
@agent_24_9_drops_step_records
def test_batch_failed_build_skips_exec(agent: AgentSession) -> None:
    _, steps = agent.batch("", "echo compile error >&2; exit 3", "echo should-not-run")
    assert [s.status for s in steps] == ["clean-finished", "build-finished", "finished"]
    assert steps[1].exit_code == 3
    assert "compile error" in steps[1].stderr
    assert steps[2].exit_code == 127
    assert "should-not-run" not in steps[2].stdout
    # the next batch runs normally again
    _, again = agent.batch("", "", "echo ok")
    assert (again[-1].exit_code, again[-1].stdout) == (0, "ok\n")


@shared_runner
@agent_24_9_drops_step_records
def test_batch_missing_command_is_127(agent: AgentSession) -> None:
    _, steps = agent.batch("", "", "this-command-does-not-exist-xyz")
    assert steps[-1].exit_code == 127


@shared_runner
@agent_24_9_drops_step_records
def test_batch_large_utf8_output(agent: AgentSession) -> None:
    """2.2 MB of 3-byte characters: chunk borders split characters; the agent's
    incremental decoder must see an unbroken stream."""
    _, steps = agent.batch("", "", "yes 가나다라마바사 | head -n 100000", timeout=60)
    result = steps[-1]
    assert result.exit_code == 0
    assert "\ufffd" not in result.stdout
    assert result.stdout == "가나다라마바사\n" * 100000


@agent_24_9_drops_step_records
def test_batch_stdin_input_round_trip(agent: AgentSession) -> None:
    """Any program that reads its stdin gets a waiting-input and the next `input`."""
    run_id, steps = agent.batch("", "", 'read line; echo "got:$line"')
    assert [s.status for s in steps] == ["clean-finished", "build-finished", "waiting-input"]
    done = agent.execute(run_id, "input", "xyz")
    assert done.status == "finished"
    assert done.exit_code == 0
    assert "got:xyz" in done.stdout


@agent_24_9_drops_step_records
def test_interrupt_batch_kills_the_process_tree(agent: AgentSession) -> None:
    sleep = unique_sleep(61)

    async def scenario() -> RunResult:
        task = await agent.start_exec(new_run_id(), f"{sleep}; echo unreachable")
        await wait_until_async(lambda: bool(processes_matching(sleep)), "sleep starting")
        assert not task.done(), "sleep finished early"
        await agent.kernel.interrupt_kernel()
        return await task

    # Bounded below the sleep's 61 s: only the interrupt can end it in time.
    result = agent.run(scenario(), timeout=45)
    assert result.status == "finished"
    assert result.exit_code not in (None, 0)
    assert "unreachable" not in result.stdout
    assert still_running(processes_matching(sleep)) == []
    _, again = agent.batch("", "", "echo next")
    assert again[-1].stdout == "next\n"


def test_executions_are_serialised(agent: AgentSession, tmp_path: Path) -> None:
    """Two concurrent API requests: the second waits for the first to finish."""
    started = tmp_path / "first-started"
    slow = f"import time\nopen({str(started)!r}, 'w').close()\ntime.sleep(1)\nprint('first')"
    finished: list[str] = []

    async def execute(name: str, code: str) -> RunResult:
        result = await agent.execute_until_status(new_run_id(), "query", code)
        finished.append(name)
        return result

    async def scenario() -> tuple[RunResult, RunResult]:
        first = asyncio.ensure_future(execute("first", slow))
        await wait_until_async(started.exists, "the first snippet starting")
        # Run concurrently, this one would finish long before the first one's sleep(1).
        second = asyncio.ensure_future(execute("second", "print('second')"))
        return await first, await second

    first, second = agent.run(scenario())
    assert (first.stdout, second.stdout) == ("first\n", "second\n")
    assert finished == ["first", "second"]


# --------------------------------------------------------------------------------------
# process lifecycle
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signo", [signal.SIGINT, signal.SIGTERM])
@agent_24_9_drops_step_records
def test_stop_signal_stops_running_children(agent: AgentSession, signo: int) -> None:
    """Docker stops the container with SIGINT (StopSignal) or SIGTERM; the runner must stop
    the user's processes (and its Jupyter kernel) before it exits."""
    sleep = unique_sleep(62)

    async def start_sleep() -> asyncio.Future[RunResult]:
        task = await agent.start_exec(new_run_id(), sleep)
        await wait_until_async(lambda: bool(processes_matching(sleep)), "sleep starting")
        return task

    execution = agent.run(start_sleep())
    tree = agent.runner.descendants()
    agent.runner.proc.send_signal(signo)
    try:
        assert agent.runner.proc.wait(15) is not None
    finally:
        execution.cancel()  # the agent would wait on for a reply of the dead runner
        agent.run(asyncio.wait({execution}, timeout=5))
    assert still_running(processes_matching(sleep)) == []
    assert still_running(tree) == [], "left behind"


@agent_24_9_drops_step_records
def test_two_runners_side_by_side(
    agent: AgentSession, another_agent: Callable[[], AgentSession]
) -> None:
    """Two runners on one machine never collide (ports, work dirs, input sockets)."""
    second = another_agent()
    run_a, run_b = new_run_id(), new_run_id()
    code = "name = input('who? ')\nprint('I am', name)"
    assert agent.execute(run_a, "query", code).status == "waiting-input"
    assert second.execute(run_b, "query", code).status == "waiting-input"
    assert "I am second" in second.execute(run_b, "input", "second").stdout
    assert "I am first" in agent.execute(run_a, "input", "first").stdout
    # Each runner executes in its own work dir.
    assert not agent.work_dir.samefile(second.work_dir)
    for session, name in ((agent, "first"), (second, "second")):
        _, steps = session.batch("", "", f"echo {name} > whoami.txt; pwd")
        assert Path(steps[-1].stdout.strip()).samefile(session.work_dir)
    assert (agent.work_dir / "whoami.txt").read_text() == "first\n"
    assert (second.work_dir / "whoami.txt").read_text() == "second\n"


def test_idle_runner_exits_on_sigterm(agent: AgentSession) -> None:
    assert agent.query("pass").exit_code == 0  # the Jupyter kernel is up
    tree = agent.runner.descendants()
    assert tree, "no Jupyter kernel process under the runner"
    agent.runner.proc.send_signal(signal.SIGTERM)
    assert agent.runner.proc.wait(15) is not None
    assert still_running(tree) == [], "left behind"
