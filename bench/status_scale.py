"""How fast status answers: ``dsr status`` as a process, and the daemon's status page while
it reconciles.

Run on a host with a Docker engine::

    .venv/bin/python bench/status_scale.py [--volumes 1000] [--containers 200] [--seconds 15]

Under a unique prefix ``dsrbench-<hex>`` it applies a spec of N volumes, M containers
(``state: created``, five volume mounts each, the volumes of one of 20 volume containers)
and a scheduled backup rule over 50 of the volumes, then prints:

1. ``dsr status PATH --format json`` as a subprocess, best and median of 5 (target < 1 s),
   beside ``dsr plan`` of the same spec (the same observe and plan, no status) and
   ``dsr --version`` (the cost of starting the process at all), measured in the same run;
2. with ``dsr run`` on the spec (``--interval 0.2``, while a thread removes one of its
   containers every second, so passes keep finding drift and applying it), the latency of
   ``GET /`` and ``GET /status.json`` for S seconds (each path in turn, 10 ms apart), p50
   and p95 (target p95 < 50 ms), beside ``GET /healthz`` (the HTTP server's floor), the
   passes made meanwhile, and one uncached render of each, in-process.

A finally block removes what the run made (containers and volumes of the prefix, its image).
Exit 0 when every step worked; with ``--strict``, a missed target fails the run too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import docker
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plan_scale import Shape, cleanup, dsr, import_busybox, names, spec_document


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed_runs(n: int, *args: str, env: dict[str, str], ok: tuple[int, ...]) -> list[float]:
    out = []
    for _ in range(n):
        seconds, done = dsr(*args, env=env)
        if done.returncode not in ok:
            raise SystemExit(
                f"dsr {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
            )
        out.append(seconds)
    return out


PATHS = ("/", "/status.json", "/healthz")


def get_latencies(port: int, seconds: float) -> dict[str, list[float]]:
    """Each path in turn, 10 ms apart, for ``seconds``: latency per path."""
    out: dict[str, list[float]] = {p: [] for p in PATHS}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in PATHS:
            started = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                r.read()
            out[path].append(time.perf_counter() - started)
            time.sleep(0.01)
    return out


def render_cost(folder: Path, state: str) -> tuple[float, float, int]:
    """Seconds to render the page and the JSON once, with no cache (best of 5), in-process."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from reconciler.daemon.page import render_html
    from reconciler.engine import Engine
    from reconciler.reconcile import compute_plan, pack_images
    from reconciler.spec import load_spec
    from reconciler.statedir import StateDir
    from reconciler.status import Status, resource_states

    desired = load_spec(str(folder))
    engine = Engine()
    plan, _ = compute_plan(engine, desired, pack_images(desired, None), StateDir(state))
    engine.close()
    status = Status(desired.project, "bench", resource_states(desired, plan.changes))
    page, doc = [], []
    for _ in range(5):
        started = time.perf_counter()
        render_html(status, time.time()).encode()
        page.append(time.perf_counter() - started)
        started = time.perf_counter()
        json.dumps(status.to_json(time.time()), indent=1).encode()
        doc.append(time.perf_counter() - started)
    return min(page), min(doc), len(status.resources)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0, help="of page requests")
    parser.add_argument("--strict", action="store_true")
    args = parser.parse_args()
    shape = Shape(args.volumes, args.containers, 20)
    prefix = f"dsrbench-{secrets.token_hex(4)}"
    image = f"{prefix}-busybox:1"
    client = docker.from_env(timeout=300)
    work = Path(tempfile.mkdtemp(prefix="dsr-status-bench-"))
    env = {**os.environ, "DSR_STATE_DIR": str(work / "state")}
    daemon = None
    missed = []
    try:
        import_busybox(client, image)
        doc = spec_document(prefix, shape, image)
        vols = names(prefix, shape)[0]
        doc["backups"] = {"nightly": {"volumes": vols[:50], "schedule": "0 3 * * *"}}
        folder = work / prefix
        folder.mkdir()
        (folder / "dsr.yaml").write_text(yaml.safe_dump(doc))
        seconds, done = dsr("apply", str(folder), env=env)
        if done.returncode != 0:
            raise SystemExit(f"dsr apply exited {done.returncode}: {done.stderr[-2000:]}")
        print(
            f"shape: {shape.volumes} volumes, {shape.containers} containers, "
            f"{shape.volume_containers} volume containers; applied in {seconds:.1f} s"
        )

        status = timed_runs(5, "status", str(folder), "--format", "json", env=env, ok=(0, 2))
        plan = timed_runs(5, "plan", str(folder), env=env, ok=(0,))
        version = timed_runs(5, "--version", env=env, ok=(0,))
        best = min(status)
        print("\n1. dsr status as a process (best / median of 5)")
        print(
            f"   dsr status --format json  {best:.3f} s / {statistics.median(status):.3f} s"
            f"   target < 1 s: {'met' if best < 1 else 'MISSED'}"
        )
        print(
            f"   dsr plan (same observe)   {min(plan):.3f} s / {statistics.median(plan):.3f} s"
            f"   status/plan {best / min(plan):.2f}"
        )
        print(
            f"   dsr --version (start-up)  {min(version):.3f} s / "
            f"{statistics.median(version):.3f} s"
        )
        if best >= 1:
            missed.append("dsr status >= 1 s")

        port = free_port()
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "--log-format",
                "json",
                "run",
                str(folder),
                "--interval",
                "0.2",
                "--metrics-addr",
                f"127.0.0.1:{port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "daemon.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            raise SystemExit("the daemon never became ready")

        stop = threading.Event()
        ctrs = names(prefix, shape)[2]

        def drift() -> None:  # created containers have nothing to stop: remove one instead
            i = 0
            while not stop.wait(1.0):
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_container(ctrs[i % len(ctrs)], force=True)
                i += 1

        def passes() -> int:
            text = (work / "daemon.log").read_text(errors="replace")
            return sum('"event": "pass"' in line for line in text.splitlines())

        before = passes()
        thread = threading.Thread(target=drift, daemon=True)
        thread.start()
        started = time.monotonic()
        latencies = get_latencies(port, args.seconds)
        page, doc_lat, health = (latencies[p] for p in PATHS)
        stop.set()
        thread.join()
        made = passes() - before
        elapsed = time.monotonic() - started
        print(
            f"\n2. the status page while the daemon reconciles ({made} passes in "
            f"{elapsed:.1f} s, a container removed every second; {len(page)} requests "
            "per path, 10 ms apart)"
        )
        for name, values in (
            ("GET /", page),
            ("GET /status.json", doc_lat),
            ("GET /healthz (floor)", health),
        ):
            target = ""
            if name != "GET /healthz (floor)":
                met = p95(values) < 0.050
                target = f"   target p95 < 50 ms: {'met' if met else 'MISSED'}"
                if not met:
                    missed.append(f"{name} p95 >= 50 ms")
            print(
                f"   {name:<22} p50 {statistics.median(values) * 1000:6.1f} ms   "
                f"p95 {p95(values) * 1000:6.1f} ms{target}"
            )
        size = len(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json").read())
        html_s, json_s, count = render_cost(folder, env["DSR_STATE_DIR"])
        print(
            f"   /status.json is {size / 1024:.0f} KiB; one uncached render of {count} "
            f"resources: page {html_s * 1000:.1f} ms, JSON {json_s * 1000:.1f} ms "
            "(the daemon renders at most once a second and after each pass)"
        )
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        problems = cleanup(client, (prefix,), image)
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
    if missed:
        print("\nmissed: " + "; ".join(missed))
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
