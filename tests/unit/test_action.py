"""The GitHub Action (``action.yml``) run as a runner would, without ``act``: each ``run``
step in bash with its ``env`` (inputs and ``github`` expressions filled in), in a real git
repository with a base and a head commit, and a fake ``gh`` that keeps the comments.

The install step is real: it makes a fresh virtual environment and pip-installs dsr from
the action's folder (this checkout), as a pull request's runner does (dependencies come
from the package index or pip's cache). It runs once for the module."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import FAKE_GH

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}
_EXPR = re.compile(r"\$\{\{\s*([\w.-]+)\s*\}\}")


def evaluate(value: str, context: dict[str, str]) -> str:
    """``${{ inputs.x }}`` and ``${{ github.y }}``, as far as the action uses them."""
    return _EXPR.sub(lambda m: context[m.group(1)], value)


def run_steps(
    runner: Path, workspace: Path, inputs: dict[str, str], github: dict[str, str], path: str
) -> tuple[int, dict[str, str]]:
    """Every ``run`` step in order, as GitHub runs a composite action; (exit, outputs)."""
    context = {f"github.{k}": v for k, v in github.items()}
    for name, spec in ACTION["inputs"].items():
        context[f"inputs.{name}"] = evaluate(str(spec.get("default", "")), context)
    context.update({f"inputs.{k}": v for k, v in inputs.items()})
    github_path, github_output = runner / "path", runner / "output"
    github_path.touch()
    github_output.write_text("")
    for step in ACTION["runs"]["steps"]:
        assert step["shell"] == "bash" and "${{" not in step["run"], "inputs only via env"
        extra = [p for p in github_path.read_text().splitlines() if p]
        env = {
            **os.environ,
            **GIT_ENV,
            "PATH": ":".join([*reversed(extra), path]),
            "GITHUB_ACTION_PATH": str(ROOT),
            "GITHUB_PATH": str(github_path),
            "GITHUB_OUTPUT": str(github_output),
            "RUNNER_TEMP": str(runner),
            **{k: evaluate(str(v), context) for k, v in step.get("env", {}).items()},
        }
        env.pop("VIRTUAL_ENV", None)
        done = subprocess.run(
            ["bash", "-e", "-c", step["run"]],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            return done.returncode, {"stderr": done.stderr, "stdout": done.stdout}
    outputs = dict(
        line.split("=", 1) for line in github_output.read_text().splitlines() if "=" in line
    )
    return 0, outputs


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """RUNNER_TEMP with a fake gh on PATH; the action's install step runs in the first test."""
    temp = tmp_path_factory.mktemp("runner")
    bin_dir = temp / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH.replace("#!/usr/bin/env python3", f"#!{sys.executable}"))
    (bin_dir / "gh").chmod(0o755)
    # The runner's own tools (git, bash, python3), not this test's virtual environment.
    system = [p for p in os.environ["PATH"].split(":") if not p.startswith(sys.prefix)]
    yield {"temp": temp, "path": ":".join([str(bin_dir), *system])}


def repository(root: Path, base: str, head: str) -> tuple[Path, str]:
    """A git repository whose base commit has ``base`` as specs/web.yaml, head ``head``."""
    root.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (root / "specs" / "htdocs").mkdir(parents=True)
    (root / "specs" / "htdocs" / "index.html").write_text("hello\n")
    (root / "specs" / "web.yaml").write_text(base)
    git("add", ".")
    git("commit", "-qm", "base")
    sha = git("rev-parse", "HEAD")
    (root / "specs" / "web.yaml").write_text(head)
    git("commit", "-qam", "head")
    return root, sha


SPEC = """\
version: 1
project: web
volumes:
  web-data: {}
containers:
  web1:
    image: httpd:2.4
    mounts:
      - ./htdocs:/usr/local/apache2/htdocs:ro
      - web-data:/data
"""


def comments(runner: dict[str, Any], state: Path) -> list[dict[str, Any]]:
    return list(json.loads(state.read_text()))


def act(runner: dict[str, Any], repo: Path, base: str, pr: str) -> tuple[int, dict[str, str]]:
    state = runner["temp"] / f"comments-{pr}.json"
    os.environ["FAKE_GH_STATE"] = str(state)
    return run_steps(
        runner["temp"],
        repo,
        {"base-sha": base, "pull-request": pr},
        {
            "token": "t0ken",
            "repository": "owner/specs",
            "action_ref": "",
            "event.pull_request.base.sha": "",
            "event.pull_request.number": "",
        },
        runner["path"],
    )


def test_only_a_comment_changed_so_the_diff_says_no_changes(
    runner: dict[str, Any], tmp_path: Path
) -> None:
    repo, base = repository(tmp_path / "repo", SPEC, "# reviewed\n" + SPEC)
    code, outputs = act(runner, repo, base, "1")
    assert code == 0, outputs
    [comment] = comments(runner, runner["temp"] / "comments-1.json")
    body = comment["body"]
    assert body.startswith("<!-- dsr-plan -->"), body
    assert "No changes" in body, body
    assert str(tmp_path) not in body and str(runner["temp"]) not in body
    assert Path(outputs["body-file"]).read_text() == body
    # The install step installed dsr from this checkout, commit included.
    dsr = runner["temp"] / "dsr-venv" / "bin" / "dsr"
    version = subprocess.run([dsr, "--version"], capture_output=True, text=True, check=True)
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert version.stdout.startswith("dsr 0.") and f"(commit {head or 'unknown'})" in (
        version.stdout
    )


def test_a_bind_only_the_host_has_passes_validate_on_the_runner(
    runner: dict[str, Any], tmp_path: Path
) -> None:
    head = SPEC + "      - /srv/registry-only-on-the-host:/var/lib/registry\n"
    repo, base = repository(tmp_path / "repo", SPEC, head)
    code, outputs = act(runner, repo, base, "2")
    assert code == 0, outputs
    [comment] = comments(runner, runner["temp"] / "comments-2.json")
    body = comment["body"]
    assert "invalid" not in body, body
    assert "container:web1" in body and "/srv/registry-only-on-the-host" in body
    assert "Checked on the host, not here" in body
    assert "specs/web.yaml:11: containers.web1.mounts[2].source" in body
    assert str(tmp_path) not in body and str(runner["temp"]) not in body
    # And on the host, plan checks it: the path does not exist here, so plan refuses.
    dsr = runner["temp"] / "dsr-venv" / "bin" / "dsr"
    plan = subprocess.run(
        [dsr, "plan", "specs"],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/dsr.sock"},
    )
    assert plan.returncode == 1
    assert "/srv/registry-only-on-the-host does not exist" in plan.stdout + plan.stderr
