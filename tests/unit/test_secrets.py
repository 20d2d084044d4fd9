"""Issue 8, class 5: plans and errors never print a value that came from ``${VAR}``, nor
an env value. ``dsr validate``, ``dsr diff`` (every format) and, when an engine answers,
``dsr plan`` run as processes with secrets in their environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "s3cr3t-Value-42"
TAG = "t8xtag-sekret"
DIR_SECRET = "hidden-dir-9f"
LITERAL_ENV = "literal-password-7"  # written in the spec: an env value never shows either
ENV = {"SECRET": SECRET, "TAG": TAG, "DIR": DIR_SECRET}
FORBIDDEN = (SECRET, TAG, DIR_SECRET, LITERAL_ENV)


def spec(tier: str, plain: str, extra: str, tag_var: str = "${TAG}") -> str:
    return f"""version: 1
project: t8xsecrets
volumes:
  t8x-data:
    labels: {{token: "${{SECRET}}"}}
containers:
  t8x-app:
    image: "busybox:{tag_var}"
    command: [sh, -c, "echo ${{SECRET}} {extra}"]
    entrypoint: ["${{SECRET}}"]
    env: {{TOKEN: "${{SECRET}}", PLAIN: {plain}, PASSWORD: {LITERAL_ENV if plain == "one" else "other-pw-77"}}}
    labels: {{auth: "${{SECRET}}", tier: {tier}}}
    user: "${{SECRET}}"
    mounts:
      - type: bind
        source: ./${{DIR}}
        target: /data
        read_only: {"true" if tier == "b" else "false"}
"""


def dsr(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **ENV, "DSR_STATE_DIR": str(cwd / "state")},
    )


def assert_no_secret(done: subprocess.CompletedProcess[str]) -> None:
    for secret in FORBIDDEN:
        assert secret not in done.stdout, done.stdout
        assert secret not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def specs(tmp_path: Path) -> Path:
    for name, text in (
        ("old", spec("a", "one", "")),
        ("new", spec("b", "two", "again", tag_var="${TAG}-2")),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / DIR_SECRET).mkdir()
        (tmp_path / name / "spec.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("fmt", ["markdown", "text", "json"])
def test_diff_shows_templates_not_values(specs: Path, fmt: str) -> None:
    done = dsr("diff", "--format", fmt, "old", "new", cwd=specs)
    assert done.returncode == 0, done.stderr
    assert_no_secret(done)
    out = done.stdout
    assert "container:t8x-app" in out and "replace" in out
    assert "${SECRET}" in out  # labels, command: shown as written
    assert "env PASSWORD, PLAIN changed" in out  # env: the keys alone
    assert "${DIR}" in out or "/data was read-write" in out


def test_validate_prints_no_secret(specs: Path) -> None:
    done = dsr("validate", "new", cwd=specs)
    assert done.returncode == 0, done.stderr
    assert_no_secret(done)


def test_errors_quote_templates_not_values(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.yaml").write_text(  # caught by the models
        """version: 1
project: t8xbad
containers:
  t8x-app:
    image: busybox
    ports: ["${SECRET}"]
    restart: "${SECRET}"
  t8x-b:
    image: busybox
    working_dir: "${SECRET}\\n"
backups:
  t8x-n:
    paths: [/srv]
    schedule: "${SECRET}"
"""
    )
    (tmp_path / "bad" / "set.yaml").write_text(  # caught by the checks of the whole set
        """version: 1
containers:
  t8x-c:
    image: "${SECRET}"
    mounts: ["/srv/${SECRET}:/data", "${SECRET}:/x"]
backups:
  t8x-m:
    paths: ["/srv/${SECRET}"]
    destination: "/etc/${SECRET}"
"""
    )
    done = dsr("validate", "bad", cwd=tmp_path)
    assert done.returncode == 1
    assert_no_secret(done)
    # /srv/${SECRET} not existing is a host fact: validate does not check it (the contract).
    assert len(done.stderr.splitlines()) == 7, done.stderr
    assert all("${SECRET}" in line for line in done.stderr.splitlines()), done.stderr


def test_what_validate_did_not_check_quotes_templates_not_values(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "spec.yaml").write_text(
        'version: 1\ncontainers:\n  cc:\n    image: busybox\n    mounts: ["/srv/${SECRET}:/d"]\n'
    )
    done = dsr("validate", "ok", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_no_secret(done)
    assert "not checked here: ok/spec.yaml:5: containers.cc.mounts[0].source: /srv/${SECRET}" in (
        done.stdout
    )


def test_project_from_a_variable_is_refused_without_printing_it(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "spec.yaml").write_text("version: 1\nproject: ${SECRET}\n")
    done = dsr("validate", "p", cwd=tmp_path)
    assert done.returncode == 1
    assert_no_secret(done)
    assert "p/spec.yaml:2: project: must be written out, not taken from ${VAR}" in done.stderr


def engine_answers() -> bool:
    if not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=5).ping()
    except Exception:
        return False
    return True


@pytest.mark.skipif(not engine_answers(), reason="no Docker engine at /var/run/docker.sock")
@pytest.mark.parametrize("fmt", ["markdown", "text"])
def test_plan_prints_no_secret(specs: Path, fmt: str) -> None:
    # Read-only against the engine: plan creates nothing (names carry the t8x prefix).
    done = dsr("plan", "--format", fmt, "new", cwd=specs, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    assert_no_secret(done)
    assert "t8x-app" in done.stdout


def test_a_changed_secret_replaces_without_showing_either_value(specs: Path) -> None:
    from reconciler.reconcile import offline_plan
    from reconciler.render import render_markdown
    from reconciler.spec import load_spec

    path = str(specs / "old")
    old = load_spec(path, env={**ENV, "SECRET": "first-secret-1"})
    new = load_spec(path, env={**ENV, "SECRET": "second-secret-2"})
    assert new.containers["t8x-app"].env["TOKEN"] == "second-secret-2"
    assert new.shown("containers", "t8x-app").env["TOKEN"] == "${SECRET}"
    out = render_markdown(offline_plan(old, new))
    assert "first-secret-1" not in out and "second-secret-2" not in out
    assert "a value it takes from the environment (${VAR}) changed" in out


@pytest.mark.parametrize("secret", ["back\\slash-secret", "new\nline-secret", "quote'secret\"x"])
def test_secrets_with_odd_characters_are_hidden_in_quoted_forms(
    tmp_path: Path, secret: str
) -> None:
    from reconciler.errors import SpecError
    from reconciler.spec import load_spec

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "spec.yaml").write_text(
        "version: 1\nproject: p\ncontainers:\n  app:\n    image: busybox\n"
        '    working_dir: "${S}"\n    mounts: ["/srv/${S}:/data"]\n'
    )
    with pytest.raises(SpecError) as raised:
        load_spec(str(tmp_path / "s"), env={"S": secret})
    text = str(raised.value)
    for form in (secret, repr(secret)[1:-1], "line-secret", "slash-secret", 'secret\\"'):
        assert form not in text, text


def test_a_container_labelled_before_display_forms_never_shows_its_old_values(
    specs: Path,
) -> None:
    """Labels written by an older dsr hold expanded values: an old secret stays unshown."""
    import dataclasses
    import json

    from reconciler.labels import SPEC
    from reconciler.plan import plan
    from reconciler.plan.simulate import simulate
    from reconciler.render import render_text
    from reconciler.spec import load_spec

    path = str(specs / "old")
    old = load_spec(path, env={**ENV, "SECRET": "old-secret-1"})
    observed = simulate(old, {})
    live = observed.containers["t8x-app"]
    legacy = json.loads(live.labels[SPEC])
    legacy["command"] = ["sh", "-c", "echo old-secret-1 "]  # as an older dsr stored it
    labels = {**live.labels, SPEC: json.dumps(legacy)}
    observed = dataclasses.replace(
        observed, containers={"t8x-app": dataclasses.replace(live, labels=labels)}
    )
    new = load_spec(path, env={**ENV, "SECRET": "new-secret-2"})
    out = render_text(plan(new, observed, {}))
    assert "old-secret-1" not in out and "new-secret-2" not in out
    # hidden value by value: each field keeps its shape (a mounts list stays one)
    assert "command was ['sh', '-c', '(stored expanded, not shown)']" in out
