"""An apply killed with SIGKILL at random moments, again and again while the spec keeps
changing, is finished by the next apply: no duplicates, no leftovers, no data lost."""

from __future__ import annotations

import os
import random
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import docker
from specgen import (
    BigSpec,
    exec_out,
    inspect,
    kill_apply_after,
    members_of,
    mounts_by_target,
    plan_json,
    prefixed_containers,
    prefixed_volumes,
    tar_of,
    write_spec,
)

# The fixtures' types live in conftest.py, which tests do not import.
DsrRunner = Callable[..., subprocess.CompletedProcess[str]]

SEED = int(os.environ.get("DSR_CRASH_SEED", "20261129"))
ROUNDS = 30


def marker_files(shape: BigSpec, i: int) -> dict[str, str]:
    """Files container ``i`` writes and must find again: in both its named volumes, in its
    anonymous volume, and (through volumes_from) in its volume container's volumes."""
    files = {"/data0/marker": f"named {shape.volumes_of(i)[0]}"}
    files["/data1/marker"] = f"named {shape.volumes_of(i)[1]}"
    if shape.has_anonymous(i):
        files["/anon/marker"] = f"anonymous of {shape.container(i)}"
    source = shape.source_of(i)
    if source is not None:
        files[f"/vc-anon/marker-{i}"] = f"anonymous of {shape.volume_container(source)}"
        files[f"/shared/marker-{i}"] = f"named {shape.volume(source)}"
    return files


def test_killed_applies_are_finished_by_the_next_one(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    dsr_state_dir: Path,
    tmp_path: Path,
    prefix: str,
    busybox_image: str,
) -> None:
    shape = BigSpec(prefix, busybox_image)
    spec = write_spec(tmp_path / "spec" / "dsr.yaml", shape.document(0))
    dsr("apply", spec, check=True)
    for i in range(shape.containers):
        script = "; ".join(
            f"echo '{text}' > {path}" for path, text in marker_files(shape, i).items()
        )
        exec_out(docker_client, shape.container(i), "sh", "-c", script)

    rng = random.Random(SEED)
    rounds = []
    for generation in range(1, ROUNDS + 1):
        write_spec(spec, shape.document(generation))
        delay = rng.uniform(0.05, 2.5)
        running, _ = kill_apply_after(spec, dsr_state_dir, delay)
        debris = sorted(
            c["Names"][0][1:]
            for c in prefixed_containers(docker_client, prefix)
            if "_dsr_" in c["Names"][0]
        )
        rounds.append({"delay": round(delay, 2), "killed": running, "debris": debris})
    story = f"seed {SEED}: {rounds}"
    assert sum(r["killed"] for r in rounds) >= 15, f"the applies ended too soon; {story}"

    result = dsr("apply", spec)
    assert result.returncode == 0, f"{story}\n{result.stdout}\n{result.stderr}"
    still = plan_json(dsr("plan", spec, "--format", "json", check=True))
    assert still["changes"] == [], f"{story}\n{still}"
    dsr("plan", spec, "--detailed-exitcode", check=0)

    wanted = {shape.container(i) for i in range(shape.containers)}
    wanted |= {shape.volume_container(v) for v in range(shape.volume_containers)}
    live = prefixed_containers(docker_client, prefix)
    names = Counter(c["Names"][0][1:] for c in live)
    logical = Counter(c["Labels"].get("dsr.name") for c in live)
    assert set(names) == wanted, f"{story}\nextra: {set(names) - wanted}"
    assert max(names.values()) == 1 and max(logical.values()) == 1, story
    assert not [n for n in names if n.endswith(("_dsr_new", "_dsr_old"))]
    states = {c["Names"][0][1:]: c["State"] for c in live}
    for i in range(shape.containers):
        assert states[shape.container(i)] == "running", story
    for v in range(shape.volume_containers):
        assert states[shape.volume_container(v)] == "created", story

    volumes = set(prefixed_volumes(docker_client, prefix))
    assert {shape.volume(i) for i in range(shape.volumes)} <= volumes

    for i in range(shape.containers):
        files = marker_files(shape, i)
        script = "; ".join(f"cat {path}" for path in files)
        code, out = docker_client.containers.get(shape.container(i)).exec_run(["sh", "-c", script])
        mounts = mounts_by_target(inspect(docker_client, shape.container(i)))
        assert (code, out.decode().splitlines()) == (0, list(files.values())), (
            f"{shape.container(i)} with {sorted((t, m.get('Name')) for t, m in mounts.items())}; "
            f"{story}"
        )


def test_the_leftovers_of_a_killed_replace_go_only_after_the_new_container_exists(
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
    tmp_path: Path,
    prefix: str,
    busybox_image: str,
) -> None:
    name = f"{prefix}-app"
    sections = {"image": busybox_image, "command": ["sleep", "1"], "mounts": ["/anon"]}
    spec = write_spec(
        tmp_path / "dsr.yaml",
        {"version": 1, "project": prefix, "containers": {name: {**sections, "env": {"V": "1"}}}},
    )
    dsr("apply", spec, check=True)
    old = docker_client.containers.get(name)
    anonymous = old.attrs["Mounts"][0]["Name"]
    old.wait(timeout=30)  # `sleep 1` exits: nothing to stop
    docker_client.api.put_archive(old.id, "/anon", tar_of("marker", b"kept"))
    # What an apply killed between its two renames leaves: the new container created under
    # a temporary name with the carried anonymous volume, the old one renamed away.
    docker_client.containers.create(
        busybox_image,
        ["sleep", "1"],
        name=f"{name}_dsr_new",
        labels=old.labels,
        volumes={anonymous: {"bind": "/anon", "mode": "rw"}},
    )
    old.rename(f"{name}_dsr_old")

    write_spec(
        spec,
        {"version": 1, "project": prefix, "containers": {name: {**sections, "env": {"V": "2"}}}},
    )
    planned = plan_json(dsr("plan", spec, "--format", "json", check=True))
    order = [c["resource"] for c in planned["changes"]]
    changes = {c["resource"]: c for c in planned["changes"]}
    leftovers = [f"container:{name}_dsr_new", f"container:{name}_dsr_old"]
    assert set(order) == {f"container:{name}", *leftovers}, planned
    assert changes[f"container:{name}"]["action"] == "create"
    for leftover in leftovers:
        assert changes[leftover]["action"] == "delete"
        # Until the new container exists, the leftovers alone name its anonymous volume.
        assert changes[leftover]["depends_on"] == [f"container:{name}"], planned
        assert order.index(leftover) > order.index(f"container:{name}")

    dsr("apply", spec, check=True)

    new = docker_client.api.inspect_container(name)
    assert [m["Name"] for m in new["Mounts"]] == [anonymous]
    assert "V=2" in new["Config"]["Env"]
    chunks, _ = docker_client.api.get_archive(name, "/anon/marker")
    assert members_of(b"".join(chunks)) == {"marker": b"kept"}
    assert sorted(c["Names"][0][1:] for c in prefixed_containers(docker_client, prefix)) == [name]
