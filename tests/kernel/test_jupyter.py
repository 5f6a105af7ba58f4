"""Query mode through a real ipykernel (kernelspec in a temporary JUPYTER_PATH)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ai.backend.kernel.protocol import Op, Record

pytest.importorskip("ipykernel")

TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)


@pytest.fixture(scope="module")
def kernel(start_module_kernel: Callable[..., Any]) -> Any:
    """One runner for the tests that leave its Jupyter kernel running; those that kill or
    restart it start their own (``own_kernel``), so that no test depends on the order."""
    return start_module_kernel("python", "--interrupt-grace", "0.5")


@pytest.fixture
def own_kernel(start_kernel: Callable[..., Any]) -> Any:
    return start_kernel("python", "--interrupt-grace", "0.5")


def test_state_is_kept_between_snippets(kernel: Any) -> None:
    assert kernel.agent.query("answer = 41").exit_code() == 0
    result = kernel.agent.query("print(answer + 1)")
    assert (result.stdout, result.exit_code()) == ("42\n", 0)


def test_exception_gives_nonzero_exit_code(kernel: Any) -> None:
    result = kernel.agent.query("raise ValueError('boom')")
    assert result.exit_code() != 0
    assert "boom" in result.stderr


def test_html_is_json_media(kernel: Any) -> None:
    result = kernel.agent.query("from IPython.display import HTML\nHTML('<b>hi</b>')")
    assert result.json_payloads(Record.MEDIA) == [{"type": "text/html", "data": "<b>hi</b>"}]


def test_images_are_data_uris_and_svg_is_text(kernel: Any) -> None:
    code = (
        "import base64\nfrom IPython.display import Image, SVG, display\n"
        f"display(Image(data=base64.b64decode('{TINY_PNG}'), format='png'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))\n"
    )
    png, svg = kernel.agent.query(code).json_payloads(Record.MEDIA)
    assert png == {"type": "image/png", "data": f"data:image/png;base64,{TINY_PNG}"}
    assert svg["type"] == "image/svg+xml"
    assert svg["data"].startswith("<svg")


def test_plain_results_go_to_stdout(kernel: Any) -> None:
    assert kernel.agent.query("6 * 7").stdout == "42\n"


def test_input_through_the_stdin_channel(kernel: Any) -> None:
    result = kernel.agent.query("name = input('who? ')\nprint('hi', name)", inputs=["Ada"])
    assert result.json_payloads(Record.WAITING_INPUT) == [{"is_password": False}]
    assert result.stdout == "who? hi Ada\n"


def test_password_prompt_is_flagged(kernel: Any) -> None:
    code = "import getpass\nsecret = getpass.getpass('pw: ')\nprint(len(secret))"
    result = kernel.agent.query(code, inputs=["hunter2"])
    assert result.json_payloads(Record.WAITING_INPUT) == [{"is_password": True}]
    assert result.stdout.endswith("7\n")


def test_completion_uses_the_kernel(kernel: Any) -> None:
    kernel.agent.query("import os")
    kernel.agent.send(Op.COMPLETE, json.dumps({"code": "os.pat", "options": {}}))
    kind, payload = kernel.agent.recv()
    assert kind == Record.COMPLETION
    assert "path" in json.loads(payload)


def test_interrupt_stops_a_running_snippet(kernel: Any) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    result = kernel.agent.query_interrupted(code, "started\n")
    assert result.exit_code() != 0
    assert "KeyboardInterrupt" in result.stderr
    assert kernel.agent.query("print('still here')").stdout == "still here\n"


def test_kernel_gets_the_child_environment(kernel: Any) -> None:
    result = kernel.agent.query("import os\nprint(os.environ['BACKENDAI_USER_INPUT_SOCKET'])")
    assert result.stdout.strip().endswith(".sock")


def test_subprocess_in_snippet_can_be_interrupted(kernel: Any) -> None:
    code = "import subprocess\nprint('started', flush=True)\nsubprocess.run(['sleep', '60'])"
    assert kernel.agent.query_interrupted(code, "started\n").exit_code() != 0


def test_dead_kernel_is_restarted(own_kernel: Any) -> None:
    result = own_kernel.agent.query("import os\nos._exit(1)")
    assert result.exit_code() == 1
    assert "restarting" in result.stderr
    assert own_kernel.agent.query("print('back')").stdout == "back\n"


def test_kernel_ignoring_the_interrupt_is_restarted(own_kernel: Any) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('started', flush=True)\ntime.sleep(60)"
    )
    result = own_kernel.agent.query_interrupted(code, "started\n")
    assert result.exit_code() != 0
    assert "restarting" in result.stderr
    assert own_kernel.agent.query("print('fresh')").stdout == "fresh\n"
