"""``dsr diff`` of one spec checked out in two folders, as a pull-request runner does it:
relative paths resolve against each side's own root, host facts are left to the host, and
no checkout folder appears in the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from reconciler.spec.rebase import mapper, relative_to, roots

NO_ENGINE = "unix:///nonexistent/dsr-test.sock"

SPEC = """\
version: 1
project: web
images:
  site: {context: ./site, path: /www}
containers:
  web1:
    image: busybox
    mounts:
      - ./htdocs:/htdocs:ro
      - ../shared:/shared
      - type: bind
        source: ./made
        target: /made
        create: true
"""


def checkout(root: Path, spec: str = SPEC, index: str = "hello") -> Path:
    specs = root / "specs"
    for folder in (specs / "htdocs", specs / "site", root / "shared"):
        folder.mkdir(parents=True, exist_ok=True)
    (specs / "site" / "index.html").write_text(index)
    (specs / "web.yaml").write_text(spec)
    return specs


def dsr(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "DOCKER_HOST": NO_ENGINE},
        timeout=60,
        check=False,
    )


def test_the_same_spec_in_two_folders_plans_no_change(tmp_path: Path) -> None:
    base = checkout(tmp_path / "runner-tmp" / "base")
    checkout(tmp_path / "repo", SPEC.replace("version: 1", "# a comment\nversion: 1"))
    done = dsr("diff", str(base), "specs", "--detailed-exitcode", cwd=tmp_path / "repo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No changes" in done.stdout
    assert str(tmp_path) not in done.stdout + done.stderr


def test_a_changed_relative_bind_shows_repository_paths(tmp_path: Path) -> None:
    base = checkout(tmp_path / "runner-tmp" / "base")
    checkout(tmp_path / "repo", SPEC.replace("./htdocs:/htdocs", "./site:/htdocs"))
    for fmt in ("text", "markdown", "json"):
        done = dsr("diff", str(base), "specs", "--format", fmt, cwd=tmp_path / "repo")
        assert done.returncode == 0, done.stderr
        assert str(tmp_path) not in done.stdout + done.stderr, done.stdout
    [change] = json.loads(done.stdout)["changes"]
    assert change["resource"] == "container:web1" and change["action"] == "replace"
    assert "was bind specs/htdocs, spec says bind specs/site" in change["reason"]


def test_image_contexts_are_hashed_where_each_side_has_them(tmp_path: Path) -> None:
    base = checkout(tmp_path / "runner-tmp" / "base")
    checkout(tmp_path / "repo", index="changed")
    done = dsr("diff", str(base), "specs", "--format", "json", cwd=tmp_path / "repo")
    assert done.returncode == 0, done.stderr
    changes = {c["resource"]: c for c in json.loads(done.stdout)["changes"]}
    assert changes["image:site"]["action"] == "build"
    assert changes["image:site"]["reason_code"] == "context-changed"


def test_a_bind_only_the_host_has_is_not_checked_by_validate_or_diff(tmp_path: Path) -> None:
    base = checkout(tmp_path / "runner-tmp" / "base")
    host_only = SPEC + "      - /srv/dsr-test-only-on-the-host:/data\n"
    checkout(tmp_path / "repo", host_only)
    repo = tmp_path / "repo"
    done = dsr("validate", "specs", cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not checked here: specs/web.yaml:15: containers.web1.mounts[3].source: " in (
        done.stdout
    )
    done = dsr("diff", str(base), "specs", "--format", "json", cwd=repo)
    assert done.returncode == 0, done.stderr
    assert "/srv/dsr-test-only-on-the-host does not exist here" in done.stderr
    [change] = json.loads(done.stdout)["changes"]
    assert "/data is new (bind /srv/dsr-test-only-on-the-host)" in change["reason"]
    # The policy still holds where the spec is reviewed.
    checkout(repo, SPEC + "      - /etc/dsr-test:/etc-x\n")
    done = dsr("validate", "specs", cwd=repo)
    assert done.returncode == 1 and "under the protected /etc" in done.stdout + done.stderr


def test_errors_of_the_base_name_no_runner_folder(tmp_path: Path) -> None:
    base = checkout(tmp_path / "runner-tmp" / "base", SPEC.replace("image: busybox", "imag: x"))
    checkout(tmp_path / "repo")
    done = dsr("diff", str(base), "specs", cwd=tmp_path / "repo")
    assert done.returncode == 1
    assert str(tmp_path) not in done.stdout + done.stderr
    assert "specs/web.yaml:7: containers.web1: in the base revision: unknown key" in done.stderr


def test_roots_widen_while_folder_names_agree(tmp_path: Path) -> None:
    for folder in ("x/base/specs", "r/repo/specs", "old", "new"):
        (tmp_path / folder).mkdir(parents=True)
    t = str(tmp_path)
    assert roots(f"{t}/x/base/specs", f"{t}/r/repo/specs") == (f"{t}/x/base", f"{t}/r/repo")
    assert roots(f"{t}/old", f"{t}/new") == (f"{t}/old", f"{t}/new")
    assert roots(f"{t}/old", f"{t}/old") == (f"{t}/old", f"{t}/old")
    move = mapper("/tmp/x/base", "/home/r/repo")
    assert move("/tmp/x/base/specs/htdocs") == "/home/r/repo/specs/htdocs"
    assert move("/tmp/x/base") == "/home/r/repo"
    assert move("/tmp/x/basement/a") == "/tmp/x/basement/a"
    assert move("/srv/data") == "/srv/data"
    text = "bind /home/r/repo/specs/a and /home/r/repo and /home/r/repository/b"
    assert relative_to(text, "/home/r/repo") == "bind specs/a and . and /home/r/repository/b"
