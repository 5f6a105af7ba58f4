"""`publish`: uploads a tagged, verified release to an index with twine, re-runnably, and proves
that it installs from there.

Credentials are twine's business alone (TWINE_USERNAME/TWINE_PASSWORD, keyring, the
`--repository` sections of ~/.pypirc): this module never reads, passes or prints them. What is
on the index is read from its simple page (PEP 691 JSON, or PEP 503 HTML), which needs none.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name

from release.artifacts import Artifact, Contents, list_artifacts, read_contents, read_metadata
from release.errors import ReleaseError
from release.fileio import sha256_file
from release.installcheck import importable_modules, make_venv
from release.proc import python_module, run_unchecked
from release.versioning import CalVer

Log = Callable[[str], None]
DEFAULT_DEPS_INDEX = "https://pypi.org/simple/"
# Where twine uploads to when given `--repository pypi` or `testpypi` without a ~/.pypirc entry.
TWINE_DEFAULT_REPOSITORIES = {
    "pypi": "https://upload.pypi.org/legacy/",
    "testpypi": "https://test.pypi.org/legacy/",
}
# The extras the install check asks for, so that they resolve too.
EXTRAS = {canonicalize_name("backend.ai-kernel"): "[client]"}
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Index:
    """Where to upload (as twine is told) and the simple index that shows what is there."""

    twine_args: tuple[str, ...]
    upload_url: str
    simple_url: str

    @classmethod
    def choose(
        cls,
        repository: str | None,
        repository_url: str | None,
        index_url: str | None,
        pypirc: Path,
    ) -> Index:
        if (repository is None) == (repository_url is None):
            raise ReleaseError("give either --repository NAME or --repository-url URL")
        if repository_url is not None:
            upload_url = repository_url
            twine_args: tuple[str, ...] = ("--repository-url", repository_url)
        else:
            assert repository is not None
            upload_url = repository_url_from_pypirc(repository, pypirc)
            twine_args = ("--repository", repository)
        parts = urllib.parse.urlsplit(upload_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReleaseError(f"index URL {upload_url!r} is not an http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise ReleaseError(
                "the index URL carries credentials; give them to twine instead"
                " (TWINE_USERNAME/TWINE_PASSWORD, keyring or ~/.pypirc)"
            )
        return cls(twine_args, upload_url, index_url or simple_url_of(upload_url))


def repository_url_from_pypirc(name: str, pypirc: Path) -> str:
    """The upload URL of a ~/.pypirc section, read as twine reads it (its credentials are left
    for twine to read)."""
    config = configparser.RawConfigParser()
    try:
        config.read(pypirc, encoding="utf-8")
    except configparser.Error as error:
        raise ReleaseError(f"cannot read {pypirc}: {error}") from None
    if config.has_option(name, "repository"):
        return config.get(name, "repository")
    if name in TWINE_DEFAULT_REPOSITORIES:
        return TWINE_DEFAULT_REPOSITORIES[name]
    raise ReleaseError(f"{pypirc} has no [{name}] section with a repository URL")


def simple_url_of(upload_url: str) -> str:
    """PyPI and TestPyPI take uploads at /legacy/ and serve /simple/; pypiserver and most
    others serve /simple/ under the upload URL (`--index-url` tells any other)."""
    parts = urllib.parse.urlsplit(upload_url)
    if parts.hostname == "upload.pypi.org":
        return "https://pypi.org/simple/"
    if parts.path.rstrip("/").endswith("/legacy"):
        base = parts.path.rstrip("/").removesuffix("/legacy")
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, base + "/simple/", "", ""))
    return upload_url.rstrip("/") + "/simple/"


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str
    sha256: str | None


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def index_files(simple_url: str, project: str) -> dict[str, IndexFile]:
    """The files the index lists for a project (none when it does not know the project)."""
    page_url = urllib.parse.urljoin(simple_url, canonicalize_name(project) + "/")
    request = urllib.request.Request(page_url, headers={"Accept": SIMPLE_ACCEPT})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            content_type = response.headers.get("Content-Type", "")
            body = response.read()
            final_url = response.geturl()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return {}
        raise ReleaseError(f"cannot read {page_url}: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ReleaseError(f"cannot read {page_url}: {reason}") from None
    if "json" in content_type:
        return json_files(body, final_url)
    return html_files(body.decode("utf-8", "replace"), final_url)


def json_files(body: bytes, page_url: str) -> dict[str, IndexFile]:
    try:
        files = json.loads(body)["files"]
        return {
            str(f["filename"]): IndexFile(
                str(f["filename"]),
                urllib.parse.urljoin(page_url, str(f["url"])),
                (f.get("hashes") or {}).get("sha256"),
            )
            for f in files
        }
    except (ValueError, KeyError, TypeError) as error:
        raise ReleaseError(f"{page_url}: not a PEP 691 simple page: {error}") from None


def html_files(body: str, page_url: str) -> dict[str, IndexFile]:
    parser = _Links()
    parser.feed(body)
    found = {}
    for href, text in parser.links:
        url = urllib.parse.urljoin(page_url, href)
        path, _, fragment = url.partition("#")
        filename = text or urllib.parse.unquote(path.rsplit("/", 1)[-1])
        match = re.fullmatch(r"sha256=([0-9a-fA-F]{64})", fragment)
        found[filename] = IndexFile(filename, path, match[1].lower() if match else None)
    return found


def digest_on_index(entry: IndexFile) -> str:
    """The sha256 the index gives, or, where its page gives none, of the file downloaded."""
    if entry.sha256 is not None:
        return entry.sha256
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry.url, timeout=TIMEOUT_SECONDS) as response:
            while block := response.read(1 << 20):
                digest.update(block)
    except (urllib.error.URLError, OSError) as error:
        raise ReleaseError(f"cannot download {entry.url}: {error}") from None
    return digest.hexdigest()


Action = Literal["upload", "skip"]


@dataclass(frozen=True)
class Step:
    artifact: Artifact
    sha256: str
    action: Action
    url: str | None = None  # where the index has it, when skipped


def dependency_order(artifacts: Sequence[Artifact]) -> list[Artifact]:
    """Each distribution after the first-party distributions it requires (what others pin goes
    first), then by name; a distribution's sdist before its wheels."""
    names = sorted({a.name for a in artifacts})
    requires: dict[NormalizedName, set[NormalizedName]] = {name: set() for name in names}
    for artifact in artifacts:
        metadata = read_metadata(artifact, read_contents(artifact))
        for line in metadata.get_all("Requires-Dist") or ():
            try:
                required = canonicalize_name(Requirement(str(line)).name)
            except InvalidRequirement:
                continue
            if required in requires and required != artifact.name:
                requires[artifact.name].add(required)
    ordered: list[NormalizedName] = []
    visiting: set[NormalizedName] = set()

    def visit(name: NormalizedName) -> None:
        if name in ordered:
            return
        if name in visiting:
            raise ReleaseError(f"first-party requirements form a cycle through {name}")
        visiting.add(name)
        for required in sorted(requires[name]):
            visit(required)
        visiting.discard(name)
        ordered.append(name)

    for name in names:
        visit(name)
    rank = {name: index for index, name in enumerate(ordered)}
    return sorted(artifacts, key=lambda a: (rank[a.name], a.kind != "sdist", a.path.name))


def plan(artifacts: Sequence[Artifact], index: Index) -> list[Step]:
    """What to upload and what the index already has; refuses, before anything is uploaded, if
    the index has a file of the same name with other bytes."""
    listed: dict[NormalizedName, dict[str, IndexFile]] = {}
    steps = []
    for artifact in dependency_order(artifacts):
        if artifact.name not in listed:
            listed[artifact.name] = index_files(index.simple_url, artifact.name)
        local = sha256_file(artifact.path)
        entry = listed[artifact.name].get(artifact.path.name)
        if entry is None:
            steps.append(Step(artifact, local, "upload"))
            continue
        remote = digest_on_index(entry)
        if remote != local:
            raise ReleaseError(
                f"{artifact.path.name} is on {index.simple_url} with sha256 {remote}, but the"
                f" file here has sha256 {local}: refusing to upload anything (a version on an"
                " index is never overwritten)"
            )
        steps.append(Step(artifact, local, "skip", entry.url))
    return steps


def upload(step: Step, index: Index) -> None:
    """One file, by twine, which finds the credentials itself; its errors become one line."""
    twine = python_module("twine")
    command = [
        *twine.argv,
        "--no-color",
        "upload",
        "--non-interactive",
        "--disable-progress-bar",
        *index.twine_args,
        str(step.artifact.path),
    ]
    result = run_unchecked(command, "twine upload", env={**twine.env, "COLUMNS": "1000"})
    if result.returncode != 0:
        raise ReleaseError(
            f"uploading {step.artifact.path.name} to {index.upload_url} failed:"
            f" {twine_error(result.stdout + result.stderr)}"
        )


def twine_error(output: str) -> str:
    """twine's first ERROR message with its continuation lines, as one line."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("ERROR")), None)
    if start is None:
        return next((ln.strip() for ln in reversed(lines) if ln.strip()), "no output")
    message = [lines[start].removeprefix("ERROR")]
    message += [ln for ln in lines[start + 1 :] if ln[:1].isspace()]
    return re.sub(r"\s+", " ", " ".join(message)).strip()


def publish_files(
    artifacts: Sequence[Artifact], index: Index, *, dry_run: bool, log: Log
) -> list[Step]:
    steps = plan(artifacts, index)
    for step in steps:
        name = step.artifact.path.name
        if step.action == "skip":
            log(f"skip {name}: on the index with the same sha256 ({step.url})")
        elif dry_run:
            log(f"would upload {name} (sha256 {step.sha256})")
        else:
            upload(step, index)
            log(f"uploaded {name} (sha256 {step.sha256})")
    return steps


@dataclass(frozen=True)
class Installed:
    project: str
    version: str
    url: str
    sha256: str | None


def install_check(
    artifacts: Sequence[Artifact],
    version: CalVer,
    index: Index,
    deps_index: str,
    log: Log,
) -> None:
    """Installs every distribution at exactly VERSION from the index into a fresh virtualenv
    (dependencies from `deps_index`), checks each file pip took is byte for byte ours, imports
    each package and runs the kernel runner's --help."""
    projects = sorted({a.name for a in artifacts})
    local = {a.path.name: sha256_file(a.path) for a in artifacts}
    wanted = [f"{p}{EXTRAS.get(p, '')}=={version.canonical}" for p in projects]
    modules = sorted({m for a in artifacts if a.kind == "sdist" for m in _sdist_modules(a)})
    with tempfile.TemporaryDirectory(prefix="release-publish-") as scratch:
        python, pip = make_venv(Path(scratch) / "venv")
        report = Path(scratch) / "report.json"
        command = [
            *pip.argv,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--no-cache-dir",
            "--report",
            str(report),
            "--index-url",
            index.simple_url,
        ]
        if deps_index.rstrip("/") != index.simple_url.rstrip("/"):
            command += ["--extra-index-url", deps_index]
        # The indexes are the ones named here: no pip configuration adds others.
        env = {k: v for k, v in pip.env.items() if not k.startswith("PIP_")}
        env["PIP_CONFIG_FILE"] = os.devnull
        result = run_unchecked([*command, *wanted], "pip install", env=env)
        if result.returncode != 0:
            raise ReleaseError(
                f"installing {version.canonical} from {index.simple_url} failed:"
                f" {_last_error(result.stderr or result.stdout)}"
            )
        installed = _read_report(report)
        ours = [i for i in installed if canonicalize_name(i.project) in projects]
        for item in ours:
            filename = urllib.parse.unquote(item.url.rsplit("/", 1)[-1].split("#")[0])
            if item.version != version.canonical or filename not in local:
                raise ReleaseError(
                    f"pip installed {item.project} {item.version} from {item.url}, not a file of"
                    f" this release"
                )
            if item.sha256 is not None and item.sha256 != local[filename]:
                raise ReleaseError(
                    f"{item.url} has sha256 {item.sha256}, the file here {local[filename]}"
                )
            log(f"installed {item.project} {item.version} from {item.url}")
        missing = set(projects) - {canonicalize_name(i.project) for i in ours}
        if missing:
            raise ReleaseError(f"pip did not install {', '.join(sorted(missing))}")
        _run_in(python, ["-I", "-c", _import_code(modules)], "importing the installed packages")
        _run_in(python, ["-I", "-m", "ai.backend.kernel", "--help"], "the kernel runner's --help")
        log(f"imported {', '.join(modules)}; `python -m ai.backend.kernel --help` runs")


def _sdist_modules(sdist: Artifact) -> set[str]:
    """The packages a distribution installs, read from its sdist (every distribution has one,
    a krunner released without platform wheels nothing else)."""
    inside = {p.split("/", 1)[1]: b"" for p in read_contents(sdist).data if "/" in p}
    # Top-level modules of an sdist are its build files (setup.py); packages are dotted.
    return {m for m in importable_modules(Contents({}, inside)) if "." in m}


def _import_code(modules: Iterable[str]) -> str:
    return f"import importlib\nfor m in {list(modules)!r}:\n    importlib.import_module(m)\n"


def _run_in(python: Path, args: Sequence[str], what: str) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    result = run_unchecked([str(python), *args], what, env=env)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed: {_last_error(result.stderr or result.stdout)}")


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]


def _read_report(path: Path) -> list[Installed]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        items = []
        for entry in data["install"]:
            info = entry["download_info"]
            hashes = (info.get("archive_info") or {}).get("hashes") or {}
            metadata = entry["metadata"]
            items.append(
                Installed(
                    str(metadata["name"]),
                    str(metadata["version"]),
                    str(info["url"]),
                    hashes.get("sha256"),
                )
            )
        return items
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ReleaseError(f"cannot read pip's installation report {path}: {error}") from None


def release_artifacts(dist_dir: Path) -> list[Artifact]:
    artifacts = list_artifacts(dist_dir)
    if not artifacts:
        raise ReleaseError(f"{dist_dir} holds no sdists or wheels")
    return artifacts


def pypirc_path(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or Path.home(), ".pypirc")
