"""`publish`'s reading of an index: which simple page, what it lists, in which order to upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from release.artifacts import list_artifacts
from release.errors import ReleaseError
from release.publish import Index, dependency_order, html_files, json_files, twine_error
from tests.release.distfactory import write_release


@pytest.mark.parametrize(
    ("upload", "simple"),
    [
        ("https://upload.pypi.org/legacy/", "https://pypi.org/simple/"),
        ("https://test.pypi.org/legacy/", "https://test.pypi.org/simple/"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/simple/"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/simple/"),
    ],
)
def test_the_simple_page_of_an_upload_url(upload: str, simple: str, tmp_path: Path) -> None:
    index = Index.choose(None, upload, None, tmp_path / ".pypirc")
    assert (index.upload_url, index.simple_url) == (upload, simple)
    assert index.twine_args == ("--repository-url", upload)


def test_a_pypirc_section_names_the_url_and_only_twine_reads_its_credentials(
    tmp_path: Path,
) -> None:
    pypirc = tmp_path / ".pypirc"
    pypirc.write_text(
        "[staging]\nrepository = https://index.example.invalid/upload/\n"
        "username = someone\npassword = secret\n"
    )
    index = Index.choose("staging", None, "https://index.example.invalid/simple/", pypirc)
    assert index.twine_args == ("--repository", "staging")
    assert index.upload_url == "https://index.example.invalid/upload/"
    assert "secret" not in repr(index)
    assert Index.choose("pypi", None, None, pypirc).simple_url == "https://pypi.org/simple/"
    with pytest.raises(ReleaseError, match=r"has no \[nowhere\] section"):
        Index.choose("nowhere", None, None, pypirc)
    with pytest.raises(ReleaseError, match="give either --repository NAME or --repository-url"):
        Index.choose(None, None, None, pypirc)


def test_simple_pages_html_and_json() -> None:
    digest = "ab" * 32
    html = (
        '<html><body><a href="../../packages/x-1.0.tar.gz#sha256=' + digest + '">x-1.0.tar.gz</a>'
        '<a href="/packages/x-1.0-py3-none-any.whl">x-1.0-py3-none-any.whl</a></body></html>'
    )
    files = html_files(html, "http://h/simple/x/")
    assert files["x-1.0.tar.gz"].url == "http://h/packages/x-1.0.tar.gz"
    assert files["x-1.0.tar.gz"].sha256 == digest
    assert files["x-1.0-py3-none-any.whl"].sha256 is None
    body = (
        b'{"files": [{"filename": "x-1.0.tar.gz", "url": "../x.tgz", "hashes": {"sha256": "cd"}}]}'
    )
    [entry] = json_files(body, "http://h/simple/x/").values()
    assert (entry.url, entry.sha256) == ("http://h/simple/x.tgz", "cd")


def test_what_others_pin_goes_first(tmp_path: Path) -> None:
    # write_release pins every name on each name before it: the last depends on all others.
    names = ["backend.ai-zeta", "backend.ai-alpha", "backend.ai-mid"]
    write_release(tmp_path, "24.03.4rc1", names)
    order = [a.path.name for a in dependency_order(list_artifacts(tmp_path))]
    assert order == [
        "backend_ai_zeta-24.3.4rc1.tar.gz",
        "backend_ai_zeta-24.3.4rc1-py3-none-any.whl",
        "backend_ai_alpha-24.3.4rc1.tar.gz",
        "backend_ai_alpha-24.3.4rc1-py3-none-any.whl",
        "backend_ai_mid-24.3.4rc1.tar.gz",
        "backend_ai_mid-24.3.4rc1-py3-none-any.whl",
    ]


def test_a_twine_error_is_one_line() -> None:
    output = (
        "Uploading distributions to http://127.0.0.1:1/\n"
        "Uploading x-1.0.tar.gz\n"
        "ERROR    HTTPError: 403 Forbidden from http://127.0.0.1:1/\n"
        "         Forbidden\n"
    )
    assert twine_error(output) == "HTTPError: 403 Forbidden from http://127.0.0.1:1/ Forbidden"
