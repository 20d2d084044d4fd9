"""``dsr run --git URL --ref BRANCH``: the agent's own checkout of the spec repository.

An agent on a fleet host (a Swarm task) has no checkout of its own to be handed: it clones
the repository into its state directory (``STATE_DIR/git/<digest of URL and ref>``) on
start, or reuses the clone a previous task left there, and ``--git-pull`` then
fast-forwards it like any checkout. Credentials come from a file in git's credential-store
format (``--git-credentials``, e.g. a Swarm secret) or from ``GIT_SSH_COMMAND``; git never
prompts and runs under a deadline. Only the transports a repository is served by are
allowed (no ``ext::``, which would run a command).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from reconciler import logs
from reconciler.daemon.git import run_git
from reconciler.errors import DsrError

log = logs.get_logger("dsr.git")

CLONE_TIMEOUT = 300.0
_PROTOCOLS = "file:git:http:https:ssh"  # never ext::, which runs a command


class CloneError(DsrError):
    """The repository could not be cloned or updated, and no earlier clone is there."""


def _git(*args: str, cwd: str | None = None, timeout: float = CLONE_TIMEOUT) -> str:
    try:
        done = run_git(cwd, *args, timeout=timeout, protocols=_PROTOCOLS)
    except subprocess.TimeoutExpired as err:
        raise CloneError(f"git {args[0]} did not finish within {timeout:g} s") from err
    except OSError as err:
        raise CloneError(f"cannot run git: {err}") from err
    if done.returncode != 0:
        raise CloneError(f"git {args[0]} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout.strip()


def clone_folder(state_dir: str, url: str, ref: str | None) -> str:
    """Where the clone of ``url`` at ``ref`` lives in the state directory."""
    digest = hashlib.sha256(f"{url}\0{ref or ''}".encode()).hexdigest()[:16]
    return os.path.join(state_dir, "git", digest)


def checkout(state_dir: str, url: str, ref: str | None, credentials: str | None) -> str:
    """The top of an up-to-date clone of ``url`` at branch ``ref`` (the remote's default
    branch when None). A clone left by an earlier run is fast-forwarded; when that fails
    (the remote is down), it is used as it is, and the daemon's pulls catch up later."""
    if url.startswith("-") or (ref is not None and (ref.startswith("-") or not ref.strip())):
        raise CloneError(f"{url!r} / {ref!r}: not a repository URL and branch")
    folder = clone_folder(state_dir, url, ref)
    if os.path.isdir(os.path.join(folder, ".git")):
        try:
            _git("pull", "--ff-only", "--quiet", cwd=folder)
        except CloneError as err:
            log.warning("git pull at start failed; using the clone as it is", error=str(err))
        return folder
    partial = f"{folder}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
    args = ["clone", "--quiet", "--single-branch"]
    if ref:
        args += ["--branch", ref]
    if credentials:
        args += ["-c", f"credential.helper=store --file={credentials}"]
    try:
        _git(*args, "--", url, partial)
    except CloneError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, folder)  # a clone cut short never passes for a whole one
    log.info("git clone", url=url, ref=ref, folder=folder)
    return folder


def spec_path(top: str, path: str) -> str:
    """``path`` inside the clone ``top``; refused when it leads out of it."""
    if os.path.isabs(path):
        raise CloneError(f"{path}: with --git, PATH is a folder inside the repository")
    full = os.path.realpath(os.path.join(top, path))
    if full != os.path.realpath(top) and not full.startswith(os.path.realpath(top) + os.sep):
        raise CloneError(f"{path}: leads out of the repository")
    return full
