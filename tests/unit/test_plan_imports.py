"""``dsr plan`` loads only what planning uses: the applier, its executors, the backup
package, the daemon and the libraries only they need (S3, encryption, compression,
metrics, schedules, file watching) are imported where they are used, not at start.

Checked in a fresh interpreter holding every module the plan command imports (its own
imports are inside it), so a top-level import added anywhere on that path fails here."""

from __future__ import annotations

import subprocess
import sys

# Modules the plan command runs: the CLI, a pass, rendering, saving a plan.
PLAN_PATH = [
    "reconciler.cli",
    "reconciler.reconcile",
    "reconciler.render",
    "reconciler.saved",
    "reconciler.statedir",
    "reconciler.request",
]

NOT_FOR_A_PLAN = [
    "reconciler.apply",
    "reconciler.execute",
    "reconciler.backup",
    "reconciler.daemon",
    "boto3",
    "botocore",
    "pyrage",
    "zstandard",
    "blake3",
    "prometheus_client",
    "croniter",
    "watchfiles",
    "rich",
]


def test_the_plan_path_imports_nothing_only_apply_backup_or_the_daemon_use() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in PLAN_PATH)
        + "print('\\n'.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert set(PLAN_PATH) <= loaded
    wrong = sorted(
        m for m in loaded if any(m == bad or m.startswith(bad + ".") for bad in NOT_FOR_A_PLAN)
    )
    assert not wrong, f"imported on the plan path: {wrong}"


def test_an_event_loads_structlog_without_rich_and_rich_still_loads_after() -> None:
    """structlog imports rich only to draw tracebacks (~70 ms of every dsr process that
    logs, a backup among them): dsr loads it as if rich were absent, and a progress bar
    that wants rich afterwards still gets the real one."""
    code = (
        "import sys\n"
        "from reconciler import logs\n"
        "logs.configure('console')\n"
        "logs.get_logger('t').info('an event', n=1)\n"
        "print(sorted(m for m in sys.modules if m == 'rich' or m.startswith('rich.')))\n"
        "import rich.console\n"
        "print(type(sys.modules['rich']).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "module"]
    assert "an event" in done.stderr
