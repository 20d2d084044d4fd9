"""``dsr import engine`` of a host with many objects, then the first ``dsr plan`` of it.

Run on a host with a Docker engine (``DOCKER_HOST`` or the local socket)::

    .venv/bin/python bench/import_engine.py [--volumes 500] [--containers 100]

It makes, under a unique prefix ``dsrimp-<hex>`` and without dsr (plain docker-py, as a
host that ran ``docker run -v`` would hold them): a busybox image (``docker import`` of the
host's static ``/bin/busybox``), N volumes, and M containers (created, not started: two
cores are shared), each mounting N/M of the volumes and one anonymous volume. Then, as a
user runs them (subprocesses, best of 3):

1. ``dsr --project P import engine --compose-project P --out DIR``: every container of the
   run (they carry the label ``com.docker.compose.project=P``, so the import takes exactly
   them) with the volumes they use;
2. ``dsr plan DIR``: the first plan of that spec, which must hold only adoptions (checked).

Targets: each under 2 s. A finally block removes what the run made, and nothing else
(containers and volumes named with the prefix, the image's tag). Exit 0 when every step
worked and the plan held only adoptions (with ``--strict``: and the targets were met).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def import_busybox(client: docker.DockerClient, tag: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    repository, version = tag.rsplit(":", 1)
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=version)


def make_host(client: docker.DockerClient, prefix: str, volumes: int, containers: int) -> None:
    names = [f"{prefix}-v{i:04d}" for i in range(volumes)]
    for name in names:
        client.api.create_volume(name=name)
    per = max(1, volumes // containers)
    for i in range(containers):
        mine = names[i * per : (i + 1) * per]
        binds = [f"{v}:/data/{n}" for n, v in enumerate(mine)]
        host = client.api.create_host_config(binds=binds, restart_policy={"Name": "always"})
        client.api.create_container(
            image=f"{prefix}/busybox:1",
            name=f"{prefix}-c{i:03d}",
            command=["/bin/busybox", "sleep", "3600"],
            environment=[f"INDEX={i}", "MODE=bench"],
            labels={"com.docker.compose.project": prefix, "role": "bench"},
            volumes=["/scratch"],
            host_config=host,
        )


def cleanup(client: docker.DockerClient, prefix: str) -> None:
    for c in client.api.containers(all=True, filters={"name": prefix}):
        if c["Names"][0].lstrip("/").startswith(prefix):
            client.api.remove_container(c["Id"], v=True, force=True)
    for v in client.api.volumes().get("Volumes") or []:
        if v["Name"].startswith(prefix):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_volume(v["Name"])
    with contextlib.suppress(docker.errors.APIError):
        client.api.remove_image(f"{prefix}/busybox:1")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    return time.perf_counter() - started, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=500)
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--strict", action="store_true", help="a missed target fails the run")
    args = parser.parse_args()
    prefix = f"dsrimp-{secrets.token_hex(4)}"
    client = docker.from_env(timeout=120)
    dsr = [sys.executable, "-m", "reconciler"]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DSR_STATE_DIR": os.path.join(tmp, "state")}
        out = os.path.join(tmp, "spec")
        try:
            import_busybox(client, f"{prefix}/busybox:1")
            started = time.perf_counter()
            make_host(client, prefix, args.volumes, args.containers)
            print(f"made {args.volumes} volumes and {args.containers} containers in "
                  f"{time.perf_counter() - started:.1f} s (docker-py)")  # fmt: skip
            imports, plans = [], []
            for _ in range(3):
                seconds, done = timed(
                    [*dsr, "--project", prefix, "import", "engine", "--compose-project",
                     prefix, "--out", out], env,
                )  # fmt: skip
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                imports.append(seconds)
                spec = os.path.join(out, f"{prefix}.yaml")
                seconds, done = timed([*dsr, "plan", spec, "--format", "json"], env)
                if done.returncode != 0:
                    print(done.stderr, file=sys.stderr)
                    return 1
                plans.append(seconds)
                plan = json.loads(done.stdout)
                actions = {c["action"] for c in plan["changes"]}
                if (
                    actions != {"adopt"}
                    or plan["summary"]["adopt"] != args.volumes + args.containers
                ):
                    print(
                        f"the first plan is not only adoptions: {plan['summary']}", file=sys.stderr
                    )
                    ok = False
            print(f"dsr import engine ({args.containers} containers, {args.volumes} volumes): "
                  f"{min(imports):.2f} s best of 3 (target < {TARGET_S:g} s)")  # fmt: skip
            print(f"first dsr plan of the import ({args.volumes + args.containers} adoptions): "
                  f"{min(plans):.2f} s best of 3 (target < {TARGET_S:g} s)")  # fmt: skip
            print("command: .venv/bin/python bench/import_engine.py "
                  f"--volumes {args.volumes} --containers {args.containers}")  # fmt: skip
            missed = min(imports) >= TARGET_S or min(plans) >= TARGET_S
            if missed:
                print("a target was missed", file=sys.stderr)
            return 0 if ok and not (args.strict and missed) else 1
        finally:
            cleanup(client, prefix)


if __name__ == "__main__":
    sys.exit(main())
