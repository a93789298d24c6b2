"""deploy/Dockerfile and deploy/Dockerfile.dockerignore, checked without a Docker engine
(none on this machine): the instructions the deployment relies on, agreement with the
Kubernetes manifest and pyproject.toml, and the build context the ignore rules let through,
evaluated with Docker's own matching rules."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass

import pytest

from tests.deploy.support import DEPLOY, REPO, load_yaml

DOCKERFILE = DEPLOY / "Dockerfile"
IGNORE = DEPLOY / "Dockerfile.dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    stage: int
    keyword: str
    args: str


def instructions() -> list[Instruction]:
    """Every instruction, numbered by build stage (0 = the first FROM's)."""
    result: list[Instruction] = []
    stage, pending = -1, ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        result.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
    return result


def _final(keyword: str) -> list[str]:
    """The arguments of ``keyword`` in the runtime (last) stage."""
    last = max(i.stage for i in instructions())
    return [i.args for i in instructions() if i.stage == last and i.keyword == keyword]


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's exec-form command, as Docker would run it."""
    [healthcheck] = _final("HEALTHCHECK")
    _, _, command = healthcheck.partition(" CMD ")
    argv: list[str] = json.loads(command)
    return argv


def test_two_stages_build_a_wheel_and_install_only_it() -> None:
    froms = [i.args for i in instructions() if i.keyword == "FROM"]
    assert froms == ["python:3.11-slim AS builder", "python:3.11-slim"]
    builder = [i.args for i in instructions() if i.stage == 0 and i.keyword == "RUN"]
    assert any("pip wheel" in run for run in builder)
    runtime_runs = _final("RUN")
    assert any("pip install" in r and "--no-index" in r and "from=builder" in r for r in runtime_runs)
    # The runtime stage gets no source tree: only what pip installed from the wheels.
    assert _final("COPY") == []


def test_runs_as_a_non_root_user_the_kubernetes_manifest_agrees_with() -> None:
    [user] = _final("USER")
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}
    deployment = next(
        d for d in load_yaml(DEPLOY / "kubernetes" / "deployment.yaml") if d["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)
    assert any(f"--uid {uid}" in run for run in _final("RUN")), "the USER is created in the image"


def test_signals_ports_healthcheck_and_command() -> None:
    assert _final("STOPSIGNAL") == ["SIGTERM"]
    assert _final("EXPOSE") == ["3333 9100"]
    argv = healthcheck_command()
    assert argv[:2] == ["python", "-c"]
    assert "http://127.0.0.1:9100/healthz" in argv[2]
    assert json.loads(_final("ENTRYPOINT")[0]) == ["stratum-proxy"]
    assert json.loads(_final("CMD")[0]) == ["run", "--config", "/etc/stratum-proxy/proxy.toml"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert "stratum-proxy" in scripts, "the ENTRYPOINT is the wheel's console script"


# ------------------------------------------------------------------ the build context


@dataclass(frozen=True)
class Rule:
    """One .dockerignore line: a path pattern, or with ``!`` an exception to earlier ones."""

    regex: re.Pattern[str]
    exclusion: bool


def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax (moby/patternmatcher): ``*`` and ``?`` stop at ``/``, ``**``
    spans directories, and the pattern must match the whole path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _rules() -> list[Rule]:
    rules = []
    for raw in IGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        rules.append(Rule(_compile(line.removeprefix("!").strip("/")), exclusion))
    return rules


def excluded(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the context) out: the last matching rule
    wins, and a rule matching a parent directory matches everything below it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    matched = False
    for rule in _rules():
        if rule.exclusion != matched:  # only a rule that could change the answer counts
            continue
        if any(rule.regex.fullmatch(c) for c in candidates):
            matched = not rule.exclusion
    return matched


def test_the_matcher_follows_dockers_rules() -> None:
    """The rules above, on cases whose Docker answer is known, so a matcher bug cannot pass."""
    assert _compile("*").fullmatch("a") and not _compile("*").fullmatch("a/b")
    assert _compile("**/__pycache__").fullmatch("__pycache__")
    assert _compile("**/__pycache__").fullmatch("a/b/__pycache__")
    assert _compile("**/*.pyc").fullmatch("a/b.pyc") and not _compile("**/*.pyc").fullmatch("a/b.py")


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "proxy/__init__.py", "proxy/cli.py"])
def test_the_context_has_what_the_wheel_needs(path: str) -> None:
    assert (REPO / path).exists()
    assert not excluded(path)


def test_the_context_is_exactly_the_package_and_its_metadata() -> None:
    """Top level: only what `pip wheel .` reads; below proxy/: every source file."""
    top = {p.name for p in REPO.iterdir() if not excluded(p.name)}
    assert top == {"pyproject.toml", "README.md", "proxy"}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["readme"] in top
    sources = [
        p.relative_to(REPO).as_posix() for p in (REPO / "proxy").rglob("*.py") if "__pycache__" not in p.parts
    ]
    assert sources
    assert [s for s in sources if excluded(s)] == []


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/conftest.py",
        "deploy/Dockerfile",
        "proxy.toml.example",
        "stratum_proxy.egg-info/PKG-INFO",
        "proxy/__pycache__/cli.cpython-311.pyc",
        "proxy/stratum/__pycache__/codec.cpython-311.pyc",
        "proxy/stale.pyc",
    ],
)
def test_the_context_leaves_out(path: str) -> None:
    assert excluded(path)
