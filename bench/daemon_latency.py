"""How fast ``dsr run`` reacts, beside the floor, and what it costs while idle.

Run on a host with a Docker engine (``DOCKER_HOST`` or the local socket)::

    .venv/bin/python bench/daemon_latency.py [--trials 20] [--idle-seconds 60] [--idle-volumes 1000]

Under a unique prefix ``dsrbench-<hex>`` it measures, in one run:

1. the floor: a bare docker-py event listener (in-process) that recreates a volume as soon
   as its ``destroy`` event arrives; N deletions;
2. drift repaired: ``dsr run`` (a subprocess) on a spec of a few volumes; N out-of-band
   deletions of one of them, each until dsr recreated it;
3. spec edit applied: N saves of the spec file, each adding a volume, until it exists;
4. idle: ``dsr run`` on a spec of 1,000 volumes (default ``--interval``, 60 s), after it
   converged: CPU (utime + stime from /proc) and resident memory over the idle time.

Each latency is from just before the change (the ``docker volume rm`` call, the file
write) to the moment a separate event listener sees the volume's ``create`` event. It
prints p50 and p95 beside the targets; it asserts nothing. A finally block stops the
daemons and removes the volumes named with the run's prefix, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import yaml

ROOT = Path(__file__).resolve().parents[1]


class Creations:
    """Watches the engine's volume ``create`` events; ``wait(name)`` returns when one came."""

    def __init__(self, client: docker.APIClient, prefix: str) -> None:
        self.prefix = prefix
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stream = client.events(decode=True, filters={"type": "volume", "event": "create"})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.stream:
                name = event.get("Actor", {}).get("ID", "")
                if name.startswith(self.prefix):
                    with self.cond:
                        self.seen[name] = time.perf_counter()
                        self.cond.notify_all()
        except Exception:  # closed at the end
            return

    def wait(self, name: str, after: float, timeout: float = 10.0) -> float:
        """Seconds from ``after`` to the create event of ``name`` (inf on timeout)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.seen.get(name, 0.0) < after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return float("inf")
                self.cond.wait(left)
            return self.seen[name] - after


def floor_listener(client: docker.APIClient, names: set[str], stop: threading.Event) -> Any:
    """The floor: recreate a volume of ``names`` the moment its destroy event arrives."""
    stream = client.events(decode=True, filters={"type": "volume", "event": "destroy"})

    def run() -> None:
        try:
            for event in stream:
                if stop.is_set():
                    return
                name = event.get("Actor", {}).get("ID", "")
                if name in names:
                    client.create_volume(name=name)
        except Exception:
            return

    threading.Thread(target=run, daemon=True).start()
    return stream


def spec(prefix: str, folder: Path, volumes: list[str]) -> Path:
    path = folder / "dsr.yaml"
    document = {"version": 1, "project": prefix, "volumes": {v: {} for v in volumes}}
    tmp = folder / ".dsr.yaml.tmp"
    tmp.write_text(yaml.safe_dump(document))
    os.replace(tmp, path)  # as editors and git do: readers never see half a file
    return path


def start_daemon(folder: Path, state: Path, log: Path, *flags: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "reconciler", "--log-format", "json", "--state-dir", str(state)]
    return subprocess.Popen(
        [*argv, "run", str(folder), *flags],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def exists(client: docker.APIClient, name: str) -> bool:
    try:
        client.inspect_volume(name)
        return True
    except docker.errors.NotFound:
        return False


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def report(name: str, values: list[float], target: float | None = None) -> None:
    p50, p95 = percentiles(values)
    goal = f"  (target p95 < {target:g} s: {'met' if p95 < target else 'MISSED'})" if target else ""
    print(f"{name:<28} p50 {p50 * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms{goal}")


def measure_floor(client: docker.APIClient, watch: Creations, prefix: str, n: int) -> list[float]:
    name = f"{prefix}-floor"
    client.create_volume(name=name)
    stop = threading.Event()
    stream = floor_listener(client, {name}, stop)
    time.sleep(0.3)
    out = []
    for _ in range(n):
        started = time.perf_counter()
        client.remove_volume(name)
        out.append(watch.wait(name, started))
        time.sleep(0.1)
    stop.set()
    stream.close()
    return out


def measure_daemon(
    client: docker.APIClient, watch: Creations, prefix: str, base: Path, n: int
) -> tuple[list[float], list[float]]:
    folder = base / prefix
    folder.mkdir()
    volumes = [f"{prefix}-d{i}" for i in range(3)]
    spec(prefix, folder, volumes)
    proc = start_daemon(folder, base / "state", base / "daemon.log")
    try:
        wait_for(lambda: all(exists(client, v) for v in volumes), 30, "the daemon's first pass")
        time.sleep(0.5)
        drift = []
        for _ in range(n):
            started = time.perf_counter()
            client.remove_volume(volumes[0])
            drift.append(watch.wait(volumes[0], started))
            time.sleep(0.2)
        edits = []
        for i in range(n):
            volumes.append(f"{prefix}-e{i}")
            started = time.perf_counter()
            spec(prefix, folder, volumes)
            edits.append(watch.wait(volumes[-1], started))
            time.sleep(0.2)
    finally:
        stop_daemon(proc)
    return drift, edits


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_idle(
    client: docker.APIClient, prefix: str, base: Path, count: int, seconds: float
) -> tuple[float, float, int]:
    project = f"{prefix}-idle"
    folder = base / project
    folder.mkdir()
    volumes = [f"{project}-{i:04d}" for i in range(count)]
    spec(project, folder, volumes)
    log = base / "idle.log"
    proc = start_daemon(folder, base / "state", log)
    try:
        wait_for(lambda: exists(client, volumes[-1]), 300, "1,000 volumes")
        wait_for(lambda: b'"trigger": "start"' in log.read_bytes(), 300, "the first pass")
        time.sleep(3)  # the passes the start and the first connect made
        cpu0, t0, peak = cpu_seconds(proc.pid), time.perf_counter(), 0.0
        passes0 = log.read_bytes().count(b'"event": "pass"')
        while time.perf_counter() - t0 < seconds:
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(1)
        share = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
        passes = log.read_bytes().count(b'"event": "pass"') - passes0
    finally:
        stop_daemon(proc)
    return share, peak, passes


def cleanup(client: docker.APIClient, prefix: str) -> None:
    for volume in client.volumes(filters={"name": prefix}).get("Volumes") or []:
        if volume["Name"].startswith(prefix):
            try:
                client.remove_volume(volume["Name"], force=True)
            except docker.errors.APIError as err:
                print(f"could not remove {volume['Name']}: {err}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--idle-volumes", type=int, default=1000)
    args = parser.parse_args()
    prefix = f"dsrbench-{secrets.token_hex(4)}"
    base = Path(tempfile.mkdtemp(prefix="dsr-bench-"))
    client = docker.APIClient(version="auto")
    watch = Creations(client, prefix)
    try:
        floor = measure_floor(client, watch, prefix, args.trials)
        drift, edits = measure_daemon(client, watch, prefix, base, args.trials)
        print(f"{args.trials} trials each, prefix {prefix}")
        report("floor (bare docker-py)", floor)
        report("drift repaired (dsr run)", drift, 0.25)
        report("spec edit applied (dsr run)", edits, 0.5)
        if args.idle_seconds > 0:
            share, peak, passes = measure_idle(
                client, prefix, base, args.idle_volumes, args.idle_seconds
            )
            print(
                f"idle, {args.idle_volumes} volumes, {args.idle_seconds:g} s ({passes} passes): "
                f"CPU {share * 100:.2f}% of a core (target < 1%), "
                f"peak RSS {peak:.0f} MB (target < 100 MB)"
            )
    finally:
        watch.stream.close()
        cleanup(client, prefix)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
