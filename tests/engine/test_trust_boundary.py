"""Issue 17 on the real engine: volume options that would mount a host path never reach
Docker, and a bind source is given to Docker resolved, so a re-pointed link is drift.

Each refused spec is applied for real; afterwards no container or volume of the test
exists, so no container could read the host's /etc."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import docker
from specgen import plan_json

from reconciler.backup import store
from reconciler.backup.manifest import VolumeInfo, sign
from reconciler.statedir import StateDir

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]

# (driver_opts, a line the refusal must hold)
HOST_MOUNTS = [
    ("{type: tmpfs, o: bind, device: /etc}", "/etc is under the protected /etc"),
    ("{type: nfs, o: 'addr=127.0.0.1,bind', device: /etc}", "/etc is under the protected /etc"),
    ("{type: cifs, o: rbind, device: /etc}", "/etc is under the protected /etc"),
    (
        "{type: overlay, device: overlay, o: 'lowerdir+=/etc,upperdir=$TMP/u,workdir=$TMP/w'}",
        "/etc is under the protected /etc",
    ),
    ("{type: none, o: bind, device: /proc/self/cwd}", "passes through /proc/self"),
    ("{type: none, o: bind, device: $TMP/cwdlink}", "passes through /proc/self"),
    ("{type: tmpfs, device: tmpfs, o: 'size=1m,remount'}", "'remount' is not a mount option"),
    ("{type: zfs, device: tank/etc}", "'zfs' is not a filesystem type dsr knows"),
]


def test_a_volume_that_would_mount_host_etc_is_never_made(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    (tmp_path / "u").mkdir()
    (tmp_path / "w").mkdir()
    (tmp_path / "cwdlink").symlink_to("/proc/self/cwd")
    for opts, why in HOST_MOUNTS:
        spec = tmp_spec(
            f"""
            version: 1
            volumes:
              {prefix}-data:
                driver_opts: {opts.replace("$TMP", str(tmp_path))}
            containers:
              {prefix}-reader:
                image: {busybox_image}
                command: [sh, -c, "cat /host/passwd; exec sleep 3600"]
                mounts: ["{prefix}-data:/host"]
            """
        )
        refused = dsr("apply", spec.parent, check=1)
        assert why in refused.stderr, (opts, refused.stderr)
        assert "Traceback" not in refused.stdout + refused.stderr
        assert not docker_client.containers.list(all=True, filters={"name": prefix}), opts
        assert not docker_client.volumes.list(filters={"name": prefix}), opts


def test_a_bind_source_is_bound_resolved_and_a_re_pointed_link_is_drift(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    docker_client: docker.DockerClient,
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    link = tmp_path / "current"
    link.symlink_to(first)
    spec = tmp_spec(
        f"""
        version: 1
        containers:
          {prefix}-app:
            image: {busybox_image}
            command: [sh, -c, "exec sleep 3600"]
            init: true
            mounts: ["{link}:/data"]
        """
    )
    dsr("apply", spec.parent, check=0)
    made = docker_client.containers.get(f"{prefix}-app")
    assert [m["Source"] for m in made.attrs["Mounts"]] == [str(first)]
    assert plan_json(dsr("plan", spec.parent, "--format", "json", check=0))["changes"] == []

    link.unlink()
    link.symlink_to(second)  # re-pointed after apply: the container still binds "first"
    made.reload()
    assert [m["Source"] for m in made.attrs["Mounts"]] == [str(first)]
    changes = plan_json(dsr("plan", spec.parent, "--format", "json", check=False))["changes"]
    assert [c["resource"] for c in changes] == [f"container:{prefix}-app"]
    assert f"which resolves to {second} now" in str(changes[0])
    dsr("apply", spec.parent, check=0)
    again = docker_client.containers.get(f"{prefix}-app")
    assert [m["Source"] for m in again.attrs["Mounts"]] == [str(second)]


def test_a_restore_never_makes_a_volume_from_a_manifest_s_options(
    prefix: str,
    tmp_spec: SpecWriter,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    """Even a manifest signed with the state directory's own key (as only its holder
    could) that records a bind of the state directory makes a plain local volume."""
    volume, into = f"{prefix}-data", f"{prefix}-into"
    spec = tmp_spec(
        f"""
        version: 1
        volumes:
          {volume}: {{}}
        backups:
          nightly:
            volumes: [{volume}]
        """
    )
    dsr("apply", spec.parent, check=0)
    dsr("backup", spec.parent, check=0)
    [manifest] = (dsr_state_dir / "backups").rglob("manifest.json")
    folder = str(manifest.parent)
    snapshot = store.load(folder, spec.parent.name)
    assert snapshot is not None
    bind = {"type": "none", "o": "bind", "device": str(dsr_state_dir)}
    edited = snapshot.manifest.model_copy(
        update={"volume": VolumeInfo(driver="local", options=bind, labels={})}
    )
    store.write_manifest(folder, sign(edited, StateDir(str(dsr_state_dir)).backup_key()))
    before = sorted(p.name for p in dsr_state_dir.iterdir())
    dsr("restore", spec.parent, volume, "--into", into, check=0)
    assert docker_client.api.inspect_volume(into)["Options"] in (None, {})
    assert sorted(p.name for p in dsr_state_dir.iterdir()) == before
    assert not (dsr_state_dir / "data.bin").exists()

    # and an edit without the key is refused by the snapshot's id
    write_plain = {**json.loads(manifest.read_text()), "size": 1}
    manifest.write_text(json.dumps(write_plain))
    latest = dsr("restore", spec.parent, volume, "--into", f"{prefix}-other", check=1)
    assert "no complete backup" in latest.stderr
    by_id = dsr(
        "restore", spec.parent, volume, "--backup", snapshot.id, "--into", f"{prefix}-other",
        check=1,
    )  # fmt: skip
    assert f"backup {snapshot.id} is damaged" in by_id.stderr
    assert "edited after the backup" in by_id.stderr
    assert not docker_client.volumes.list(filters={"name": f"{prefix}-other"})
