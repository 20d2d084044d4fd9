"""How dsr scales: apply from empty against plain docker-py, and a plan with nothing to do.

Run on a host with a Docker engine (``DOCKER_HOST`` or the local socket)::

    .venv/bin/python bench/plan_scale.py [--volumes 1000] [--containers 200] [--strict]

It makes, under a unique prefix ``dsrbench-<hex>``:

- a busybox image, by ``docker import`` of the host's static ``/bin/busybox``;
- a spec of N volumes, M containers (``state: created``, each mounting a few volumes and
  taking the volumes of one volume container) and K volume containers;

then measures, in one run:

1. ``dsr apply`` of that spec on an engine without any of it (a subprocess, as a user runs it);
2. the same objects made by a plain docker-py script, one call after the other (volumes,
   then volume containers, then containers), in-process, under a second prefix; and once
   more with docker-py's low-level client (one request per object), under a third;
3. once the baselines' objects are removed again (the engine holds the spec's shape),
   ``dsr plan`` with nothing to do, best of 3 (a subprocess);
4. the Engine API calls that planning makes (in-process: ``load_spec`` and
   ``reconcile.compute_plan`` on a counting ``Engine``);
5. one whole pass per stage (load, hash, lock, observe, plan, apply), in-process
   (``reconcile.run_pass``, best of 5, nothing to do) as the daemon calls it (the spec it
   loaded, the connection it keeps: the target, under 150 ms) and reading the spec again,
   and as a ``dsr apply`` process (its JSON ``pass`` event), from empty and with nothing
   to do.

A finally block removes what the run made, and nothing else: containers and volumes whose
``dsr.project`` label is one of the run's prefixes or whose name starts with one, and the
image's tag. Exit 0 when every step worked (1 otherwise); with ``--strict``, a missed
target fails the run too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconciler import reconcile  # noqa: E402  (the checkout, not an installed copy)
from reconciler.engine import Engine  # noqa: E402
from reconciler.request import Request  # noqa: E402
from reconciler.spec import load_spec  # noqa: E402
from reconciler.statedir import StateDir  # noqa: E402

PROJECT_LABEL = "dsr.project"
MOUNTS_PER_CONTAINER = 5
MOUNTS_PER_VOLUME_CONTAINER = 2
COMMAND = ["/bin/busybox", "sleep", "3600"]


@dataclass(frozen=True)
class Shape:
    volumes: int
    containers: int
    volume_containers: int


@dataclass
class Figure:
    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None  # None: no target


# --- the objects -----------------------------------------------------------------------------


def names(prefix: str, shape: Shape) -> tuple[list[str], list[str], list[str]]:
    vols = [f"{prefix}-v{i:04d}" for i in range(shape.volumes)]
    vcs = [f"{prefix}-vc{i:02d}" for i in range(shape.volume_containers)]
    ctrs = [f"{prefix}-c{i:03d}" for i in range(shape.containers)]
    return vols, vcs, ctrs


def container_volumes(vols: list[str], index: int) -> list[str]:
    start = (index * MOUNTS_PER_CONTAINER) % len(vols)
    return [vols[(start + j) % len(vols)] for j in range(MOUNTS_PER_CONTAINER)]


def vc_volumes(vols: list[str], index: int) -> list[str]:
    # From the end of the list, so volume containers and containers share few volumes.
    n = MOUNTS_PER_VOLUME_CONTAINER
    return [vols[-1 - (index * n + j)] for j in range(n)]


def spec_document(prefix: str, shape: Shape, image: str) -> dict[str, Any]:
    vols, vcs, ctrs = names(prefix, shape)
    return {
        "version": 1,
        "project": prefix,
        "volumes": {v: {} for v in vols},
        "volume_containers": {
            vc: {
                "image": image,
                "mounts": [f"{v}:/shared{j}" for j, v in enumerate(vc_volumes(vols, i))],
            }
            for i, vc in enumerate(vcs)
        },
        "containers": {
            c: {
                "image": image,
                "command": COMMAND,
                "state": "created",
                "mounts": [f"{v}:/data{j}" for j, v in enumerate(container_volumes(vols, i))],
                "volumes_from": [vcs[i % len(vcs)]],
            }
            for i, c in enumerate(ctrs)
        },
    }


def import_busybox(client: docker.DockerClient, tag: str) -> None:
    """A one-file image: the host's static busybox, by ``docker import`` (no registry)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    repository, version = tag.rsplit(":", 1)
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=version)


def baseline(prefix: str, shape: Shape, image: str) -> None:
    """What a careful script does by hand: one docker-py call per object, in order."""
    client = docker.from_env()
    labels = {PROJECT_LABEL: prefix}
    vols, vcs, ctrs = names(prefix, shape)
    for v in vols:
        client.volumes.create(name=v, labels=labels)
    for i, vc in enumerate(vcs):
        client.containers.create(
            image,
            command=COMMAND,
            name=vc,
            labels=labels,
            network_mode="none",
            mounts=[
                docker.types.Mount(target=f"/shared{j}", source=v, type="volume")
                for j, v in enumerate(vc_volumes(vols, i))
            ],
        )
    for i, c in enumerate(ctrs):
        client.containers.create(
            image,
            command=COMMAND,
            name=c,
            labels=labels,
            mounts=[
                docker.types.Mount(target=f"/data{j}", source=v, type="volume")
                for j, v in enumerate(container_volumes(vols, i))
            ],
            volumes_from=[vcs[i % len(vcs)]],
        )
    client.close()


def baseline_low_level(prefix: str, shape: Shape, image: str) -> None:
    """The same with docker-py's low-level client: one request per object, no inspect after
    each create (the high-level ``containers.create`` reloads what it made: two requests)."""
    api = docker.from_env().api
    labels = {PROJECT_LABEL: prefix}
    vols, vcs, ctrs = names(prefix, shape)
    for v in vols:
        api.create_volume(name=v, labels=labels)
    for i, vc in enumerate(vcs):
        mounts = [
            docker.types.Mount(target=f"/shared{j}", source=v, type="volume")
            for j, v in enumerate(vc_volumes(vols, i))
        ]
        host_config = api.create_host_config(mounts=mounts, network_mode="none")
        api.create_container(
            image, command=COMMAND, name=vc, labels=labels, host_config=host_config
        )
    for i, c in enumerate(ctrs):
        mounts = [
            docker.types.Mount(target=f"/data{j}", source=v, type="volume")
            for j, v in enumerate(container_volumes(vols, i))
        ]
        host_config = api.create_host_config(mounts=mounts, volumes_from=[vcs[i % len(vcs)]])
        api.create_container(image, command=COMMAND, name=c, labels=labels, host_config=host_config)
    api.close()


# --- clean-up: only what this run made ------------------------------------------------------


def owned(prefixes: tuple[str, ...], name: str, labels: dict[str, str] | None) -> bool:
    project = (labels or {}).get(PROJECT_LABEL, "")
    return any(name.lstrip("/").startswith(p) or project == p for p in prefixes)


def cleanup(
    client: docker.DockerClient, prefixes: tuple[str, ...], image: str, keep_image: bool = False
) -> list[str]:
    problems: list[str] = []
    for raw in client.api.containers(all=True):
        name = (raw.get("Names") or [""])[0]
        if owned(prefixes, name, raw.get("Labels")):
            try:
                client.api.remove_container(raw["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as err:
                problems.append(f"container {name}: {err}")
    for raw in client.api.volumes().get("Volumes") or []:
        if owned(prefixes, raw["Name"], raw.get("Labels")):
            try:
                client.api.remove_volume(raw["Name"], force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as err:
                problems.append(f"volume {raw['Name']}: {err}")
    if keep_image:
        return problems
    try:
        client.api.remove_image(image, force=False)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as err:
        problems.append(f"image {image}: {err}")
    return problems


def count_owned(client: docker.DockerClient, prefix: str) -> tuple[int, int]:
    containers = client.api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={prefix}"})
    volumes = client.api.volumes(filters={"label": f"{PROJECT_LABEL}={prefix}"})
    return len(containers), len(volumes.get("Volumes") or [])


# --- measuring -------------------------------------------------------------------------------


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    elapsed: list[float] = []
    yield lambda: elapsed[0] if elapsed else time.perf_counter() - started
    elapsed.append(time.perf_counter() - started)


def compile_package() -> None:
    """Write dsr's bytecode once, as installing a package does: a checkout run with
    PYTHONDONTWRITEBYTECODE=1 (as CI and these machines set it) would otherwise compile every
    module from source in every ``dsr`` process timed here (~0.1 s of each)."""
    package = Path(reconcile.__file__).parent
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)], capture_output=True, check=False
    )
    state = "written" if done.returncode == 0 else f"not written ({done.stderr!r})"
    print(f"bytecode of {package}: {state}", flush=True)


def dsr(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=1800,
        check=False,
    )
    return time.perf_counter() - started, done


def pass_stages(done: subprocess.CompletedProcess[str]) -> dict[str, float]:
    """Seconds per stage from the ``pass`` event a ``dsr --log-format json apply`` logs."""
    for line in done.stderr.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == "pass":
            return {k: v / 1000 for k, v in event.get("stages_ms", {}).items()}
    return {}


def stage_figures(
    title: str, total: float, stages: dict[str, float], target: str = "", met: bool | None = None
) -> list[Figure]:
    out = [Figure(title, total, "s", target, met)]
    for stage in reconcile.STAGES:
        if stage in stages:
            out.append(Figure(f"  {stage}", round(stages[stage], 4), "s"))
    return out


def table(figures: list[Figure]) -> str:
    rows = [("measure", "value", "target", "")]
    for f in figures:
        value = (
            "-"
            if f.value is None
            else (f"{f.value:.2f} {f.unit}" if f.unit == "s" else f"{f.value:g} {f.unit}".strip())
        )
        mark = "" if f.met is None else ("met" if f.met else "MISSED")
        rows.append((f.name, value, f.target, mark))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", type=int, default=1000)
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--volume-containers", type=int, default=20)
    parser.add_argument("--workers", type=int, default=None, help="dsr apply --workers")
    parser.add_argument("--strict", action="store_true", help="a missed target fails the run")
    options = parser.parse_args()
    shape = Shape(options.volumes, options.containers, options.volume_containers)

    run = secrets.token_hex(4)
    prefix, base_prefix = f"dsrbench-{run}", f"dsrbench-{run}-base"
    low_prefix = f"dsrbench-{run}-low"
    image = f"dsrbench-{run}/busybox:1"
    client = docker.from_env()
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    env = {**os.environ, "DSR_STATE_DIR": str(workdir / "state")}
    compile_package()
    figures: list[Figure] = []
    failures: list[str] = []
    print(
        f"dsr scale benchmark {prefix}: {shape.volumes} volumes, {shape.containers} containers, "
        f"{shape.volume_containers} volume containers",
        flush=True,
    )
    try:
        import_busybox(client, image)
        spec_dir = workdir / prefix
        spec_dir.mkdir()
        (spec_dir / "spec.yaml").write_text(
            yaml.safe_dump(spec_document(prefix, shape, image), sort_keys=False)
        )
        workers = ["--workers", str(options.workers)] if options.workers else []

        apply_seconds, applied = dsr(
            "--log-format", "json", "apply", str(spec_dir), *workers, env=env
        )
        applied_stages = pass_stages(applied)
        if applied.returncode != 0:
            failures.append(f"dsr apply exited {applied.returncode}: {applied.stderr[-2000:]}")
        expected = (shape.containers + shape.volume_containers, shape.volumes)
        if count_owned(client, prefix) != expected:
            failures.append(f"dsr apply made {count_owned(client, prefix)}, not {expected}")

        with stopwatch() as base_seconds:
            baseline(base_prefix, shape, image)
        if count_owned(client, base_prefix) != expected:
            failures.append(f"the baseline made {count_owned(client, base_prefix)}")
        ratio = apply_seconds / base_seconds()
        with stopwatch() as low_seconds:
            baseline_low_level(low_prefix, shape, image)
        if count_owned(client, low_prefix) != expected:
            failures.append(f"the low-level baseline made {count_owned(client, low_prefix)}")

        # What is measured from here on runs against the shape the targets name: the
        # baselines' objects go first (left on the engine, they would triple what every
        # list call of an observation returns).
        problems = cleanup(client, (base_prefix, low_prefix), image, keep_image=True)
        failures += [f"clean-up of the baselines: {p}" for p in problems]

        plan_runs = []
        for _ in range(3):
            seconds, planned = dsr("plan", str(spec_dir), "--detailed-exitcode", env=env)
            plan_runs.append(seconds)
            if planned.returncode != 0:
                failures.append(
                    f"dsr plan after apply exited {planned.returncode} (0: no changes): "
                    f"{planned.stdout[-2000:]}{planned.stderr[-2000:]}"
                )
                break

        startup = min(dsr("--help", env=env)[0] for _ in range(3))
        engine = Engine()
        with stopwatch() as loading:
            desired = load_spec(str(spec_dir))
        before = engine.calls
        with stopwatch() as in_process:
            quiet, _ = reconcile.compute_plan(engine, desired, {}, StateDir(env["DSR_STATE_DIR"]))
        if quiet.changes:
            failures.append(f"the in-process plan has {len(quiet.changes)} changes, not 0")
        engine.close()

        request = Request(path=str(spec_dir), apply=True, state_dir=env["DSR_STATE_DIR"])
        passes = []
        for _ in range(5):
            with stopwatch() as one_pass:
                result = reconcile.run_pass(request)
            if result.error is not None or not result.converged or result.outcomes:
                failures.append(f"the in-process no-op pass did something: {result}")
                break
            passes.append((one_pass(), result.seconds))
        noop_seconds, noop_stages = min(passes, key=lambda p: p[0]) if passes else (0.0, {})
        # The daemon reloads the spec only when its files changed: a drift or interval
        # pass starts from the spec already loaded, on a connection it keeps.
        loaded = load_spec(str(spec_dir))
        kept = Engine()
        # As the daemon keeps it: what docker inspect said of its containers stays known
        # until a container event (none comes here; the first pass inspects them all).
        kept.keep_inspected = True
        reconcile.run_pass(request, engine=kept, desired=loaded)
        warm = []
        for _ in range(5):
            with stopwatch() as one_pass:
                result = reconcile.run_pass(request, engine=kept, desired=loaded)
            warm.append((one_pass(), result.seconds))
        kept.close()
        warm_seconds, warm_stages = min(warm, key=lambda p: p[0])
        noop_process, noop_done = dsr("--log-format", "json", "apply", str(spec_dir), env=env)
        if noop_done.returncode != 0:
            failures.append(
                f"the no-op dsr apply exited {noop_done.returncode}: "
                f"{noop_done.stdout[-2000:]}{noop_done.stderr[-2000:]}"
            )

        figures += [
            Figure("dsr apply from empty (subprocess)", apply_seconds, "s"),
            Figure("docker-py baseline, one by one (in-process)", base_seconds(), "s"),
            Figure("ratio apply / baseline", round(ratio, 2), "", "<= 0.9", ratio <= 0.9),
            Figure("docker-py low-level, one request each (in-process)", low_seconds(), "s"),
            Figure("  ratio apply / low-level", round(apply_seconds / low_seconds(), 2), ""),
            Figure(
                "dsr plan, nothing to do (best of 3)",
                min(plan_runs),
                "s",
                "< 1 s",
                min(plan_runs) < 1,
            ),
            Figure("  of which starting Python and importing (dsr --help)", startup, "s"),
            Figure("  of which loading the spec (in-process)", loading(), "s"),
            Figure("  of which observing and planning (in-process)", in_process(), "s"),
            # Three list calls, and one inspect per container of the project (the live
            # settings drift is compared on): a one-shot plan pays those; the daemon does
            # once, then again only after a container event.
            Figure(
                "Engine API calls of a plan",
                engine.calls,
                "",
                f"<= {10 + shape.containers + shape.volume_containers}",
                engine.calls <= 10 + shape.containers + shape.volume_containers,
            ),
            Figure("  of which observing (the rest: the version check)", engine.calls - before, ""),
            *stage_figures(
                "dsr apply from empty, per stage (its pass event)", apply_seconds, applied_stages
            ),
            # The target is the daemon's pass: it loads the spec again only when a file
            # changed. A pass that also reads and checks the YAML is shown beside it.
            *stage_figures(
                "no-op pass in-process, spec read again (run_pass, best of 5)",
                noop_seconds,
                noop_stages,
            ),
            *stage_figures(
                "no-op pass as the daemon runs it (spec loaded, best of 5)",
                warm_seconds,
                warm_stages,
                "< 0.15 s",
                warm_seconds < 0.15,
            ),
            *stage_figures("no-op dsr apply (process)", noop_process, pass_stages(noop_done)),
        ]
    except Exception as err:
        failures.append(f"{type(err).__name__}: {err}")
    finally:
        problems = cleanup(client, (prefix, base_prefix, low_prefix), image)
        failures += [f"clean-up: {p}" for p in problems]
        left = [count_owned(client, p) for p in (prefix, base_prefix, low_prefix)]
        if left != [(0, 0)] * 3:
            failures.append(f"clean-up left {left}")
        shutil.rmtree(workdir, ignore_errors=True)
        client.close()

    if figures:
        print()
        print(table(figures))
    missed = [f.name.strip() for f in figures if f.met is False]
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    if missed:
        print(f"\ntargets missed: {', '.join(missed)}")
    return 1 if failures or (options.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
