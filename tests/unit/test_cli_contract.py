"""The contract's rule for every command: data on stdout, diagnostics on stderr, ``--format
json`` JSON on stdout even on error, and one exit code per outcome (0 done, 1 error, 2
changes pending, 3 finished with blocked changes).

No engine answers here (``DOCKER_HOST`` points at nothing): each case stops before one is
needed, or is decided from literal values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.apply import Outcome
from reconciler.cli.commands import apply_exit, plural
from reconciler.plan.model import Action, Change, Plan, ReasonCode
from reconciler.reconcile import PassResult, deletes_everything
from reconciler.spec import Desired

NO_ENGINE = "unix:///nonexistent/docker.sock"


def dsr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DSR_STATE_DIR"}
    env.update(DOCKER_HOST=NO_ENGINE, XDG_STATE_HOME=str(cwd / "state"))
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.yaml").write_text("version: 1\nvolumes:\n  data:\n    drivr: local\n")
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--format", "json", "web"),
        ("diff", "--format", "json", "web", "web"),
        ("backups", "list", "--format", "json", "web"),
        ("backups", "prune", "--dry-run", "--format", "json", "web"),
    ],
    ids=["plan", "diff", "backups-list", "backups-prune"],
)
def test_format_json_prints_json_even_on_error(bad_spec: Path, args: tuple[str, ...]) -> None:
    done = dsr(*args, cwd=bad_spec)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["format_version"] == 1
    error = doc["error"]
    assert (error["file"], error["line"]) == ("web/a.yaml", 4)
    assert error["message"] == "volumes.data: unknown key 'drivr'; did you mean 'driver'?"
    assert [i["line"] for i in error["issues"]] == [4]
    # The same diagnostic, for people, on stderr.
    assert "web/a.yaml:4: volumes.data: unknown key 'drivr'" in done.stderr


def test_an_error_without_a_place_has_null_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.yaml").write_text("version: 1\n")
    done = dsr("plan", "--format", "json", "web", cwd=tmp_path)  # no engine answers
    assert done.returncode == 1
    error = json.loads(done.stdout)["error"]
    assert (error["file"], error["line"]) == (None, None)
    assert error["message"] and error["message"] in done.stderr


def test_text_errors_go_to_stderr_only(bad_spec: Path) -> None:
    for args in (("validate", "web"), ("plan", "web"), ("apply", "web")):
        done = dsr(*args, cwd=bad_spec)
        assert (done.returncode, done.stdout) == (1, ""), args
        assert "web/a.yaml:4: volumes.data" in done.stderr, args


def test_one_shot_commands_log_json_lines_when_piped(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.yaml").write_text("version: 1\nvolumes:\n  data: {}\n")
    done = dsr("apply", "--engine-timeout", "1", "web", cwd=tmp_path)
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "pass" for e in events), done.stderr


def change(resource: str, action: Action) -> Change:
    return Change(resource, action, "why", ReasonCode.MISSING)


@pytest.mark.parametrize(
    ("actions", "statuses", "errors", "code"),
    [
        ([Action.CREATE], ["ok"], (), 0),
        ([Action.CREATE, Action.BLOCKED], ["ok"], (), 3),
        ([Action.BLOCKED, Action.BLOCKED], [], (), 3),
        ([Action.CREATE, Action.BLOCKED], ["failed"], (), 1),
        ([Action.CREATE], ["skipped"], (), 1),
        ([Action.BLOCKED], [], ("volume:x: the external volume x does not exist",), 1),
        ([], [], (), 0),
    ],
)
def test_apply_exit_codes(
    actions: list[Action],
    statuses: list[str],
    errors: tuple[str, ...],
    code: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changes = tuple(change(f"volume:v{i}", a) for i, a in enumerate(actions))
    plan = Plan(project="web", changes=changes, errors=errors)
    outcomes = tuple(
        Outcome(c, status) for c, status in zip(plan.actionable, statuses, strict=True)
    )
    assert apply_exit(PassResult(plan=plan, outcomes=outcomes)) == code
    out, err = capsys.readouterr()
    blocked = actions.count(Action.BLOCKED)
    if blocked:  # a summary even when nothing ran
        assert f"{blocked} blocked." in out
    if "failed" in statuses:
        assert "volume:v0: failed" in err and "failed" not in out.split("Applied")[0]


def test_plural() -> None:
    assert (plural(1, "change"), plural(0, "change"), plural(2, "change")) == (
        "1 change",
        "0 changes",
        "2 changes",
    )


def test_an_empty_spec_that_deletes_is_what_apply_refuses() -> None:
    empty, full = Desired(project="web"), Desired(project="web", volumes={"v": None})  # type: ignore[dict-item]
    deleting = Plan("web", (change("volume:v", Action.DELETE),))
    creating = Plan("web", (change("volume:v", Action.CREATE),))
    assert deletes_everything(deleting, empty)
    assert not deletes_everything(deleting, full)
    assert not deletes_everything(creating, empty)
    assert not deletes_everything(deleting, None)  # a saved plan: reviewed as it is


def test_compose_habits_get_dsr_words(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "a.yaml").write_text(
        "version: 1\ncontainers:\n  web:\n    image: nginx\n    volumes: [./a:/a]\n"
        "    environment: {A: b}\n"
    )
    done = dsr("validate", "web", cwd=tmp_path)
    assert done.stderr.splitlines() == [
        "web/a.yaml:5: containers.web: unknown key 'volumes'; compose's 'volumes' is mounts "
        "(the same short form: SOURCE:TARGET[:ro]; volumes_from takes another container's) "
        "in dsr",
        "web/a.yaml:6: containers.web: unknown key 'environment'; compose's 'environment' is "
        "env (a mapping of NAME: value) in dsr",
    ]


def test_a_compose_file_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx\n    volumes: [./a:/a]\nvolumes:\n  data: {}\n"
    )
    done = dsr("validate", "web", cwd=tmp_path)
    (line,) = done.stderr.splitlines()  # one problem, not a schema error per key
    assert line.startswith("web/compose.yaml:1: services: this is a docker compose file")
