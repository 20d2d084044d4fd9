"""Soak: random SIGKILLs during apply (volume migrations), backup (quiesced), restore
--into and prune, interleaved with writers; every round ends with the volume holding every
byte written so far, and every restore with the bytes of the backup it chose.

Bounded in CI (``DSR_SOAK_ROUNDS``, default 10); for a long run:
``DSR_SOAK_ROUNDS=300 pytest -m soak tests/engine/test_soak_kills.py``.
The report line (kills, bytes compared, lost) is printed with ``-s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import docker
import pytest
from test_migrate import run_in_volume

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
SpecWriter = Callable[..., Path]
ROUNDS = int(os.environ.get("DSR_SOAK_ROUNDS", "10"))
SEED = int(os.environ.get("DSR_SOAK_SEED", str(int(time.time()))))
LISTING = (
    'cd /v && for f in $(find . -type f | sort); do echo "$f $(wc -c < $f) $(md5sum < $f)"; done'
)

pytestmark = pytest.mark.soak


def spec_text(prefix: str, busybox: str, tier: str, dest: Path) -> str:
    return f"""version: 1
volumes:
  {prefix}-data:
    labels: {{tier: "{tier}"}}
    on_change: migrate
containers:
  {prefix}-app:
    image: {busybox}
    command: [sh, -c, "exec sleep 3600"]
    init: true
    restart: always
    mounts: ["{prefix}-data:/data"]
backups:
  soak:
    volumes: [{prefix}-data]
    quiesce: true
    destination: {dest}
    keep: {{last: 3}}
"""


def killed(argv: list[str], state_dir: Path, delay: float) -> bool:
    """Run dsr ``argv``; SIGKILL it after ``delay`` s. True if it was still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *argv],
        env={**os.environ, "DSR_STATE_DIR": str(state_dir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    return running


def bytes_of(listing: str) -> int:
    return sum(int(line.split()[1]) for line in listing.splitlines() if line.strip())


def test_random_kills_lose_nothing(
    prefix: str,
    busybox_image: str,
    tmp_spec: SpecWriter,
    tmp_path: Path,
    dsr: DsrRunner,
    dsr_state_dir: Path,
    docker_client: docker.DockerClient,
) -> None:
    rng = random.Random(SEED)
    dest = tmp_path / "dest"
    volume = f"{prefix}-data"
    spec = tmp_spec(spec_text(prefix, busybox_image, "0", dest))
    dsr("apply", spec.parent, check=0)
    rounds: list[tuple[float, str]] = []  # (when its operation began, the listing then)
    kills = compared = rounds_done = 0
    times: list[float] = []  # of the complete backups
    story: list[str] = []

    def listing(name: str) -> str:
        return run_in_volume(docker_client, busybox_image, name, LISTING, prefix)

    for round_ in range(ROUNDS):
        # A writer: new bytes every round, some in a file that grows.
        blob = hashlib.sha256(f"{SEED}-{round_}".encode()).hexdigest()
        run_in_volume(
            docker_client, busybox_image, volume,
            f"head -c {rng.randint(1, 400_000)} /dev/urandom > /v/w{round_} && "
            f"echo {blob} >> /v/grows", prefix,
        )  # fmt: skip
        expected = listing(volume)
        time.sleep(1 - time.time() % 1)  # a backup taken in this round is told by its time
        rounds.append((float(int(time.time())), expected))
        operation = rng.choice(["apply", "backup", "prune"] + ["restore"] * bool(times))
        delay = rng.uniform(0.05, 1.5)
        if operation == "apply":
            spec.write_text(spec_text(prefix, busybox_image, str(round_ + 1), dest))
            argv = ["apply", str(spec.parent)]
        elif operation == "backup":
            argv = ["backup", str(spec.parent)]
        elif operation == "restore":
            argv = ["restore", str(spec.parent), volume, "--into", f"{prefix}-r{round_}"]
        else:
            argv = ["backups", "prune", str(spec.parent)]
        kills += killed(argv, dsr_state_dir, delay)
        story.append(f"{round_}:{operation}@{delay:.2f}")
        # The next run finishes what the killed one left (the apply converges).
        if operation in ("apply", "restore", "prune"):
            finished = dsr(*argv, check=False)
            done = "exists already" in finished.stderr  # the killed restore had finished
            assert finished.returncode == 0 or done, f"seed {SEED} {story}\n{finished.stderr}"
        dsr("apply", spec.parent, check=0)
        after = listing(volume)
        assert after == expected, f"seed {SEED}: bytes lost after {story}"
        compared += bytes_of(after)
        out = dsr("backups", "list", spec.parent, "--format", "json", check=0).stdout
        times = [
            datetime.fromisoformat(b["time"]).timestamp()
            for b in json.loads(out)["backups"]
            if b["status"] == "complete"
        ]
        if operation == "restore" and times:  # it restored the newest: of the round it began in
            held = [listed for began, listed in rounds if began <= max(times)][-1]
            restored = listing(f"{prefix}-r{round_}")
            assert restored == held, f"seed {SEED}: restore differs after {story}"
            compared += bytes_of(restored)
            docker_client.volumes.get(f"{prefix}-r{round_}").remove()
        assert docker_client.containers.get(f"{prefix}-app").status == "running", story
        rounds_done += 1
    print(
        f"soak: seed {SEED}, {rounds_done} rounds, {kills} kills, {compared} bytes compared, 0 lost"
    )
    assert kills >= ROUNDS // 4, f"seed {SEED}: too few kills landed: {story}"
