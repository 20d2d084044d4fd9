"""Issue 17's bounds, timed: ``dsr validate`` of a 1 MiB spec, and ``dsr backups list`` of
a destination holding 10,000 snapshots, one of them crafted (its manifest a FIFO, which
once hung the listing; a second run crafts a manifest with a time zone ``UTC+99:99`` and
control characters instead).

Each command runs as a subprocess (interpreter start-up included, as a user sees it),
three times (the machine is shared: one run says little); the median and best wall time,
the median's CPU time (user + system, which the load of other processes hardly changes),
the peak memory (``ru_maxrss`` from ``wait4``) and the ratio to a baseline measured in the
same run are printed. Baselines: the interpreter with libyaml composing the same spec (the
floor of a YAML loader with line marks), and reading every manifest as JSON (the floor of a
listing). Targets, judged on the median: under 2 s and under 150 MB each. Exit 1 when a
target is missed or a command fails.

    .venv/bin/python bench/trust_bounds.py [--snapshots N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

from reconciler.backup.manifest import Manifest, sign
from reconciler.backup.run import Options, backup_path
from reconciler.backup.store import Source
from reconciler.files import MAX_INPUT_BYTES
from reconciler.statedir import StateDir

TARGET_S = 2.0
REPEAT = 3
TARGET_MB = 150.0
DSR = [sys.executable, "-m", "reconciler"]


def measure(args: list[str], env: dict[str, str], *, argv: list[str] = DSR) -> Run:
    """One run of ``argv + args``: (seconds, peak MB, exit code, output)."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen([*argv, *args], env=env, stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        output = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    out = output.decode(errors="replace")
    return Run(seconds, usage.ru_maxrss / 1024, child.returncode, out, cpu)


class Run(NamedTuple):
    seconds: float
    mb: float
    code: int
    out: str
    cpu: float  # user + system seconds: what the run itself cost, whatever the load


def repeated(args: list[str], env: dict[str, str], *, argv: list[str] = DSR) -> list[Run]:
    """``REPEAT`` runs, fastest first: the machine is shared, so one run says little."""
    return sorted((measure(args, env, argv=argv) for _ in range(REPEAT)), key=lambda r: r.seconds)


def figures(runs: list[Run], baseline: list[Run]) -> str:
    """Median and best wall time, peak memory, and the ratio to the baseline's median."""
    median, base = runs[len(runs) // 2], baseline[len(baseline) // 2]
    return (
        f"median {median.seconds:.2f} s (best {runs[0].seconds:.2f} s; CPU "
        f"{median.cpu:.2f} s), {max(r.mb for r in runs):.0f} MB, "
        f"{median.seconds / base.seconds:.1f}x the baseline (CPU {median.cpu / base.cpu:.1f}x)"
    )


def big_spec(folder: Path) -> int:
    """One spec file just under the 1 MiB dsr reads: volumes and containers."""
    lines = ["version: 1", "project: t17bench", "volumes:"]
    size = sum(len(x) + 1 for x in lines)
    n = 0
    volumes, containers = [], ["containers:"]
    while True:
        vol = f"  vol-{n:06d}: {{labels: {{team: web, tier: gold}}}}"
        con = (
            f"  app-{n:06d}: {{image: busybox, command: [sleep, '1'], "
            f"mounts: ['vol-{n:06d}:/data'], env: {{N: '{n}'}}}}"
        )
        grow = len(vol) + len(con) + 2
        if size + grow + len(containers[0]) + 1 > MAX_INPUT_BYTES:
            break
        volumes.append(vol)
        containers.append(con)
        size += grow
        n += 1
    text = "\n".join(lines + volumes + containers) + "\n"
    (folder / "spec.yaml").write_text(text)
    return len(text.encode())


def destination(root: Path, count: int, crafted: str) -> Path:
    """A spec with a path rule whose destination holds ``count`` snapshots, all signed
    with the state directory's key but one, crafted as ``crafted`` says."""
    data = root / "data"
    data.mkdir()
    (data / "f").write_text("hello")
    spec = root / "t17list"
    spec.mkdir()
    dest = root / "dest"
    (spec / "spec.yaml").write_text(
        f"version: 1\nbackups:\n  nightly:\n    paths: [{data}]\n    destination: {dest}\n"
    )
    key = StateDir(str(root / "state")).backup_key()
    first = backup_path(None, "t17list", str(data), str(dest), Options(policy="nightly", key=key))
    source = Source("path", str(data))
    [archive] = (dest / "t17list").rglob("archive.tar.zst")  # DEST/PROJECT/ID/ (contract)
    base = archive.parent.parent
    for n in range(1, count):
        moment = first.time - timedelta(hours=n)
        ident = f"{source.short}-{n:05d}"
        folder = base / ident
        folder.mkdir()
        os.link(archive, folder / "archive.tar.zst")
        manifest = first.model_copy(update={"id": ident, "time": moment})
        if n == count // 2:  # the crafted one
            _craft(folder, manifest, crafted, key)
        else:  # as write_manifest writes it, without its fsync: the bench builds faster
            text = json.dumps(sign(manifest, key).to_json(), indent=2)
            (folder / "manifest.json").write_text(text)
    return spec


def _craft(folder: Path, manifest: Manifest, how: str, key: bytes) -> None:
    path = folder / "manifest.json"
    if how == "fifo":
        os.mkfifo(path)
        return
    data = sign(manifest, key).to_json()
    data.update(zone="UTC+99:99", policy="\x1b[2J\x1b]0;pwned\x07")
    path.write_text(json.dumps(data))


_COMPOSE = "import sys, yaml; yaml.compose(open(sys.argv[1]).read(), Loader=yaml.CSafeLoader)"
_READ = (
    "import sys, os, json\n"
    "for d, _, names in os.walk(sys.argv[1]):\n"
    "    p = os.path.join(d, 'manifest.json')\n"
    "    if 'manifest.json' in names and os.path.isfile(p) and not os.path.islink(p):\n"
    "        try: json.load(open(p))\n"
    "        except (OSError, ValueError): pass\n"
)


def _missed(runs: list[Run]) -> bool:
    """The target is judged on the median run."""
    median = runs[len(runs) // 2]
    return median.code != 0 or median.seconds > TARGET_S or median.mb > TARGET_MB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=10_000)
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="dsr-bench-17-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "DSR_STATE_DIR": str(root / "state")}
        specs = root / "big"
        specs.mkdir()
        size = big_spec(specs)
        # Baselines, in this run: the interpreter with libyaml composing the same file (the
        # floor of any YAML loader with line marks), and with reading every manifest as
        # JSON (the floor of any listing).
        floor = [sys.executable, "-c", _COMPOSE, str(specs / "spec.yaml")]
        compose = repeated([], env, argv=floor)
        runs = repeated(["validate", str(specs)], env)
        last = runs[0].out.strip().splitlines()[-1][:100]
        print(f"baseline: python + libyaml compose of the same file: median "
              f"{compose[1].seconds:.2f} s (CPU {compose[1].cpu:.2f} s)")  # fmt: skip
        print(f"dsr validate, one spec file of {size:,} bytes: {figures(runs, compose)} "
              f"(exit {runs[0].code}; {last})")  # fmt: skip
        failed |= _missed(runs)
        for crafted in ("fifo", "bad-zone-and-escapes"):
            run = root / crafted
            run.mkdir()
            renv = {**env, "DSR_STATE_DIR": str(run / "state")}
            built = time.perf_counter()
            spec = destination(run, args.snapshots, crafted)
            built = time.perf_counter() - built
            reading = repeated([], renv, argv=[sys.executable, "-c", _READ, str(run / "dest")])
            print(f"baseline: python reading {args.snapshots:,} manifests as JSON: median "
                  f"{reading[1].seconds:.2f} s (CPU {reading[1].cpu:.2f} s; made in "
                  f"{built:.1f} s)")  # fmt: skip
            for fmt in ("text", "json"):
                runs = repeated(["backups", "list", str(spec), "--format", fmt], renv)
                out = runs[0].out
                if fmt == "json":
                    rows = json.loads(out)["backups"]
                    damaged = [r for r in rows if r["status"] != "complete"]
                    what = f"{len(rows):,} listed, {len(damaged)} damaged: {damaged[0]['problem'][:70]}"
                else:
                    raw = "\x1b" in out
                    what = f"{len(out.splitlines()):,} lines, raw escape sequences: {raw}"
                print(
                    f"dsr backups list --format {fmt}, {args.snapshots:,} snapshots, one "
                    f"crafted ({crafted}): {figures(runs, reading)} (exit {runs[0].code}; {what})"
                )
                failed |= _missed(runs)
            shutil.rmtree(run, ignore_errors=True)
    print("targets: under 2 s and 150 MB each:", "missed" if failed else "met")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
