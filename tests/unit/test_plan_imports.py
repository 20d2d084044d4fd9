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
