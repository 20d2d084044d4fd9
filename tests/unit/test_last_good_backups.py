"""Scheduled backups run from the last good spec: the daemon records the backup rules of
each spec that loads whole, and its backup commands (``--last-good``) read them, so a spec
broken on disk stops neither reconciling nor backups. No engine: host folders only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from reconciler.backup.ops import save_last_good
from reconciler.daemon.schedule import CommandRunner
from reconciler.spec import load_spec
from reconciler.statedir import StateDir


def dsr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_broken_spec_is_backed_up_from_the_last_good_one(tmp_path: Path) -> None:
    site, store, state = tmp_path / "site", tmp_path / "store", tmp_path / "state"
    site.mkdir()
    (site / "index.html").write_text("hello")
    spec = tmp_path / "web" / "dsr.yaml"
    spec.parent.mkdir()
    spec.write_text(
        f"version: 1\nproject: web\nbackups:\n  nightly:\n    paths: [{site}]\n"
        f"    destination: {store}\n    schedule: '0 3 * * *'\n"
    )
    save_last_good(StateDir(str(state)), load_spec(str(spec)))
    spec.write_text("version: 1\nproject: web\nbackups:\n  nightly: {pathz: []}\n")
    assert dsr("backup", str(spec), "--state-dir", str(state), cwd=tmp_path).returncode == 1

    base = ["--state-dir", str(state), "--log-format", "json", "--last-good"]
    runner = CommandRunner(str(spec), base, lambda rows: seen.extend(rows), failed, lambda: "web")
    seen: list[dict[str, object]] = []
    assert runner("nightly"), failures
    assert [row["source"] for row in seen] == [f"path:{site}"]
    listed = dsr(*base, "--project", "web", "backups", "list", str(spec), "--format", "json", cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)["backups"]) == 1

    # Without a record (another project), it says so instead of backing up the broken one.
    other = dsr(*base, "--project", "shop", "backup", str(spec), cwd=tmp_path)
    assert other.returncode == 1 and "no usable record of the last good spec" in other.stderr


failures: list[tuple[str, str]] = []


def failed(rule: str, step: str) -> None:
    failures.append((rule, step))
