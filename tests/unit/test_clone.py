"""``dsr run --git URL --ref BRANCH``: the agent's clone, against real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.daemon.clone import CloneError, checkout, clone_folder, spec_path
from reconciler.daemon.git import head, pull, work_tree


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", str(bare), cwd=tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", str(bare), str(work), cwd=tmp_path)
    (work / "specs").mkdir()
    (work / "specs" / "a.yaml").write_text("version: 1\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "one", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/fleet", cwd=work)
    return bare


def test_clones_then_reuses_and_pulls(origin: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    top = checkout(str(state), f"file://{origin}", "fleet", None)
    assert top == clone_folder(str(state), f"file://{origin}", "fleet")
    assert (Path(top) / "specs" / "a.yaml").read_text() == "version: 1\n"
    work = tmp_path / "work"
    (work / "specs" / "b.yaml").write_text("version: 1\n")
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "two", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/fleet", cwd=work)
    assert checkout(str(state), f"file://{origin}", "fleet", None) == top  # the same clone
    assert (Path(top) / "specs" / "b.yaml").exists()  # fast-forwarded at start
    assert spec_path(top, "specs") == str(Path(top) / "specs")


def test_a_clone_that_fails_leaves_nothing_and_an_old_clone_is_used(
    origin: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with pytest.raises(CloneError, match="git clone failed"):
        checkout(str(state), f"file://{origin}", "no-such-branch", None)
    assert not list((state / "git").iterdir())
    top = checkout(str(state), f"file://{origin}", "fleet", None)
    origin.rename(tmp_path / "gone.git")  # the remote is down: the clone is used as it is
    assert checkout(str(state), f"file://{origin}", "fleet", None) == top


@pytest.mark.parametrize("path", ["/etc", "../..", "specs/../../.."])
def test_the_spec_path_stays_in_the_clone(origin: Path, tmp_path: Path, path: str) -> None:
    top = checkout(str(tmp_path / "s"), f"file://{origin}", "fleet", None)
    with pytest.raises(CloneError):
        spec_path(top, path)


@pytest.mark.parametrize("url", ["ext::sh -c touch% /tmp/pwned", "--upload-pack=touch /tmp/x"])
def test_dangerous_urls_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(CloneError):
        checkout(str(tmp_path), url, None, None)
    assert not Path("/tmp/pwned").exists()


def test_a_command_transport_is_refused_even_when_gits_config_allows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clone's own list of transports (``GIT_ALLOW_PROTOCOL``) refuses ``ext::``, which
    runs a command, whatever the user's git config says."""
    for name, value in {
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "protocol.ext.allow",
        "GIT_CONFIG_VALUE_0": "always",
    }.items():
        monkeypatch.setenv(name, value)
    mark = tmp_path / "ran"
    with pytest.raises(CloneError, match="git clone failed"):
        checkout(str(tmp_path / "state"), f"ext::sh -c touch% {mark}", None, None)
    assert not mark.exists()


def test_the_daemons_git_reads_no_work_tree_where_there_is_none(tmp_path: Path) -> None:
    assert work_tree(str(tmp_path)) is None
    assert head(str(tmp_path / "missing")) is None
    ok, said = pull(str(tmp_path))
    assert not ok and "not a git repository" in said
