"""deploy/: the systemd unit verifies, and the pull-request workflow's shell steps post
one comment per pull request, updated in place (run with a fake ``gh`` on PATH)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

FAKE_GH = r'''#!/usr/bin/env python3
"""gh api, as far as pr-comment.sh uses it, over a JSON file of comments."""
import json, os, re, sys

state = os.environ["FAKE_GH_STATE"]
comments = json.load(open(state)) if os.path.exists(state) else []
args = sys.argv[1:]
with open(state + ".log", "a") as log:
    log.write(json.dumps(args) + "\n")
assert args[0] == "api", args
method, body, jq, path = "GET", None, None, None
i = 1
while i < len(args):
    a = args[i]
    if a == "-X":
        method = args[i + 1]; i += 2
    elif a == "-F":
        key, _, value = args[i + 1].partition("=")
        body = open(value[1:]).read() if value.startswith("@") else value; i += 2
    elif a == "--jq":
        jq = args[i + 1]; i += 2
    elif a.startswith("--"):
        i += 1
    else:
        path = a; i += 1
if method == "GET":
    marker = re.search(r'contains\("(.*)"\)', jq).group(1)
    for c in comments:
        if marker in c["body"]:
            print(c["id"])
elif method == "POST":
    comments.append({"id": 100 + len(comments), "body": body})
elif method == "PATCH":
    wanted = int(path.rsplit("/", 1)[1])
    for c in comments:
        if c["id"] == wanted:
            c["body"] = body
json.dump(comments, open(state, "w"))
'''


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is missing (apt-get install systemd)")
    dsr = Path(sys.executable).with_name("dsr")
    unit = tmp_path / "dsr.service"
    text = (DEPLOY / "systemd/dsr.service").read_text()
    unit.write_text(text.replace("/opt/dsr/bin/dsr", str(dsr)))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # And verify does catch a broken unit, so the check above means something.
    unit.write_text(
        text.replace("Type=notify", "Type=notifyy").replace("/opt/dsr/bin/dsr", str(dsr))
    )
    broken = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True
    )
    assert "notifyy" in broken.stderr


def test_the_unit_notifies_watches_restarts_and_reaches_socket_and_state() -> None:
    lines = (DEPLOY / "systemd/dsr.service").read_text().splitlines()
    keys = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert keys["Type"] == "notify" and keys["Restart"] == "on-failure"
    assert keys["WatchdogSec"] and keys["ProtectSystem"] == "strict"
    writable = keys["ReadWritePaths"].split()
    assert "/var/lib/dsr" in writable and "-/run/docker.sock" in writable
    # --git-pull writes the checkout's .git: ProtectSystem=strict must leave it writable.
    checkout = keys["ExecStart"].split(" run ", 1)[1].split()[0]
    assert any(checkout.startswith(p.lstrip("-") + "/") for p in writable), (checkout, writable)
    assert keys["ExecStart"].startswith("/opt/dsr/bin/dsr ")  # what install.sh makes
    assert keys["NoNewPrivileges"] == "yes" and keys["ExecReload"].endswith("-HUP $MAINPID")


def test_compose_and_workflow_are_wired() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    service = compose["services"]["dsr"]
    assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"]
    assert service["command"][0] == "run"
    # One project's folder, inside the checkout mounted at the same path as on the host.
    assert "${DSR_CHECKOUT}:${DSR_CHECKOUT}" in service["volumes"]
    assert service["command"][1].endswith("}/${DSR_SPEC:-specs}")
    assert "build" not in service  # deploy/image.sh builds it: no registry, no base to pull
    workflow = yaml.safe_load((DEPLOY / "github/dsr-pr.yml").read_text())
    assert "self-hosted" in workflow["jobs"]["plan"]["runs-on"]
    uses = {
        job: [s["with"]["mode"] for s in spec["steps"] if s.get("uses") == "OWNER/dsr@REF"]
        for job, spec in workflow["jobs"].items()
    }
    assert uses == {"diff": ["diff"], "plan": ["plan"]}
    # Every job that runs dsr gets it from the action: none installs an unpublished package.
    assert "pip install" not in (DEPLOY / "github/dsr-pr.yml").read_text()


def test_compose_renders_one_project_at_the_same_path() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is missing")
    env = {**os.environ, "DSR_CHECKOUT": "/srv/dsr/repo", "DSR_SPEC": "specs/web"}
    done = subprocess.run(
        [compose, "-p", "dsr", "-f", str(DEPLOY / "compose.yaml"), "config"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    service = yaml.safe_load(done.stdout)["services"]["dsr"]
    assert service["command"][:2] == ["run", "/srv/dsr/repo/specs/web"]
    assert "/srv/dsr/repo:/srv/dsr/repo:rw" in service["volumes"]
    unset = {k: v for k, v in env.items() if k != "DSR_CHECKOUT"}
    refused = subprocess.run(
        [compose, "-p", "dsr", "-f", str(DEPLOY / "compose.yaml"), "config"],
        env=unset,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "DSR_CHECKOUT" in refused.stderr


@pytest.fixture
def pull_request(tmp_path: Path) -> dict[str, str]:
    """A git repository with a base commit and a head commit of specs/, and a fake gh."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    git("init", "-q")
    spec = repo / "specs/dsr.yaml"
    spec.write_text("version: 1\nproject: web\nvolumes:\n  web-data: {}\n")
    git("add", ".")
    git("commit", "-qm", "base")
    base = git("rev-parse", "HEAD")
    spec.write_text("version: 1\nproject: web\nvolumes:\n  web-data: {}\n  web-logs: {}\n")
    git("commit", "-qam", "head")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").write_text(FAKE_GH)
    (bin_dir / "gh").chmod(0o755)
    return {
        **env,
        "PATH": f"{bin_dir}:{env['PATH']}",
        "FAKE_GH_STATE": str(tmp_path / "comments.json"),
        "REPO": "owner/specs",
        "PR_NUMBER": "7",
        "BASE_SHA": base,
        "DSR": f"{sys.executable} -m reconciler",
        "DSR_STATE_DIR": str(tmp_path / "state"),
        "REPO_DIR": str(repo),
    }


def _run(env: dict[str, str], mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEPLOY / "github/pr-comment.sh"), mode],
        cwd=env["REPO_DIR"],
        env=env,
        capture_output=True,
        text=True,
    )


def _comments(env: dict[str, str]) -> list[dict[str, object]]:
    return list(json.loads(Path(env["FAKE_GH_STATE"]).read_text()))


def test_the_diff_is_one_comment_updated_in_place(pull_request: dict[str, str]) -> None:
    first = _run(pull_request, "diff")
    assert first.returncode == 0, first.stderr
    [comment] = _comments(pull_request)
    body = str(comment["body"])
    assert body.startswith("<!-- dsr-plan -->") and "web-logs" in body and "web-data" not in body

    spec = Path(pull_request["REPO_DIR"]) / "specs/dsr.yaml"
    spec.write_text(spec.read_text() + "  web-cache: {}\n")
    second = _run(pull_request, "diff")
    assert second.returncode == 0, second.stderr
    [updated] = _comments(pull_request)
    assert updated["id"] == comment["id"] and "web-cache" in str(updated["body"])
    log = Path(pull_request["FAKE_GH_STATE"] + ".log").read_text().splitlines()
    methods = [m for line in log for m in json.loads(line) if m in ("POST", "PATCH")]
    assert methods == ["POST", "PATCH"]


def test_an_invalid_spec_is_commented_and_fails_the_step(pull_request: dict[str, str]) -> None:
    spec = Path(pull_request["REPO_DIR"]) / "specs/dsr.yaml"
    spec.write_text(textwrap.dedent("version: 1\nvolumes:\n  web-data: {drivr: local}\n"))
    done = _run(pull_request, "diff")
    assert done.returncode == 1
    [comment] = _comments(pull_request)
    assert "invalid" in str(comment["body"]) and "drivr" in str(comment["body"])


def test_the_live_plan_is_its_own_comment(pull_request: dict[str, str], tmp_path: Path) -> None:
    """The self-hosted job's step: ``dsr plan --format markdown`` (a fake dsr here: no
    engine in unit tests) in a second comment, beside the diff's."""
    fake = tmp_path / "fake-dsr"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = plan ] && echo "| change | resource |" && exit 0\nexit 1\n'
    )
    fake.chmod(0o755)
    assert _run(pull_request, "diff").returncode == 0
    done = _run({**pull_request, "DSR": str(fake)}, "plan")
    assert done.returncode == 0, done.stderr
    diff, plan = _comments(pull_request)
    assert str(plan["body"]).startswith("<!-- dsr-plan-live -->")
    assert "| change | resource |" in str(plan["body"])
    assert "<!-- dsr-plan -->" not in str(plan["body"]) and diff["id"] != plan["id"]
