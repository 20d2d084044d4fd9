"""The daemon never takes a data-loss change from a spec file read mid-write: a file
rewritten in place in two writes 150 ms apart is read once it has rested, and the spec is
read again before any data-loss change."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import docker
from daemonproc import Starter, run_daemon
from test_migrate import run_in_volume

__all__ = ["run_daemon"]

SpecWriter = Callable[..., Path]
ROUNDS = 6


def test_a_spec_written_in_two_steps_deletes_nothing(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    busybox_image: str,
    docker_client: docker.DockerClient,
) -> None:
    kept, doomed = f"{prefix}-kept", f"{prefix}-doomed"
    head = f"version: 1\nproject: {prefix}\nvolumes:\n  {kept}: {{}}\n"
    tail = f"  {doomed}: {{reclaim: delete}}\n"
    spec = tmp_spec(head + tail)
    daemon = run_daemon(spec.parent, "--interval", "30")
    daemon.wait_for(
        lambda: {kept, doomed} <= {v.name for v in docker_client.volumes.list()}, what="made"
    )
    run_in_volume(docker_client, busybox_image, doomed, "echo precious > /v/data", prefix)
    instance = docker_client.api.inspect_volume(doomed)["Labels"]["dsr.instance"]
    for round_ in range(ROUNDS):
        with open(spec, "r+") as handle:  # in place: truncated, half, a pause, the rest
            handle.truncate(0)
            handle.write(head)
            handle.flush()
            time.sleep(0.15)
            handle.write(tail)
        time.sleep(0.6 + 0.1 * round_)
        daemon.wait_idle()
        labels = docker_client.api.inspect_volume(doomed)["Labels"]
        assert labels["dsr.instance"] == instance, f"round {round_}: {daemon.describe()}"
    assert (
        run_in_volume(docker_client, busybox_image, doomed, "cat /v/data", prefix) == "precious\n"
    )
    assert not daemon.named("change") or all(
        e.get("action") != "delete" for e in daemon.named("change")
    )


def test_a_replaced_folder_is_watched_and_drift_and_spec_errors_are_counted(
    run_daemon: Starter,
    tmp_spec: SpecWriter,
    prefix: str,
    docker_client: docker.DockerClient,
) -> None:
    def doc(*names: str) -> str:
        volumes = "".join(f"  {prefix}-{n}: {{}}\n" for n in names)
        return f"version: 1\nproject: {prefix}\nvolumes:\n{volumes}"

    def has(name: str) -> bool:
        return f"{prefix}-{name}" in {v.name for v in docker_client.volumes.list()}

    spec = tmp_spec(doc("a"))
    folder = spec.parent
    daemon = run_daemon(folder, "--interval", "60")
    daemon.wait_for(lambda: has("a"), what="a")
    daemon.wait_idle()

    # Removed behind dsr's back, the spec unchanged: made again, and counted as drift.
    docker_client.volumes.get(f"{prefix}-a").remove()
    daemon.wait_for(lambda: has("a"), what="a made again")
    daemon.wait_for(
        lambda: daemon.metric("dsr_drift_total", reason_code="missing") >= 1, what="drift"
    )

    # The folder replaced (renamed away, made again): its edits still wake the daemon.
    folder.rename(folder.with_name(folder.name + "-old"))
    folder.mkdir()
    (folder / "dsr.yaml").write_text(doc("a", "b"))
    daemon.wait_for(lambda: has("b"), timeout=5, what="b from the new folder")
    started = time.monotonic()
    (folder / "dsr.yaml").write_text(doc("a", "b", "c"))
    daemon.wait_for(lambda: has("c"), timeout=5, what="an edit in the new folder")
    assert time.monotonic() - started < 5

    # An emptied folder is a spec error, and its passes are not ok.
    (folder / "dsr.yaml").unlink()
    daemon.wait_for(lambda: daemon.metric("dsr_spec_errors") >= 1, what="spec errors")
    daemon.wait_for(
        lambda: daemon.metric("dsr_reconcile_total", result="spec_error") >= 1, what="not ok"
    )
    assert has("a") and has("b") and has("c")
