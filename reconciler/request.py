"""One request type for every command that reaches the engine: a pass (plan, apply, the
daemon's) and the backup commands (backup, list, verify, prune, restore).

Both take the same spec PATH and the same global options (project, policy, engine, state
directory, deadlines, host); each kind reads its own few fields and leaves the others at
their defaults. One type means one place that says what the global options mean, and one
conversion from the CLI's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.statedir import StateDir, default_state_dir


@dataclass(frozen=True)
class Request:
    """What one command is asked to do. ``path`` is a spec PATH or, to apply, a saved plan."""

    path: str
    project: str | None = None
    policy_file: str | None = None
    docker_host: str | None = None
    state_dir: str | None = None
    engine_timeout: float = 30.0
    lock_timeout: float = 60.0
    host: str | None = None  # --host: whose share of the spec (default: the engine's name)

    # A pass's own.
    apply: bool = False
    workers: int = 4
    accept_saved_plan: bool = True
    # dsr apply without --allow-empty: a spec that declares nothing must not delete the
    # project (the daemon's gate says the same for dsr run).
    refuse_empty: bool = False
    # Record how an applying pass went in the state directory (``dsr status`` reads it);
    # the daemon records its own, with its own words (suspended, deferred...).
    record_pass: bool = True

    # A backup command's own.
    identity: str | None = None  # --identity FILE (else DSR_AGE_IDENTITY)
    last_good: bool = False  # the daemon's: the rules of the last spec that loaded whole

    @property
    def state(self) -> StateDir:
        """The state directory: the one named, else the default one. (A pass without
        ``state_dir`` keeps no state: it reads ``state_dir`` itself.)"""
        return StateDir(self.state_dir or default_state_dir())
