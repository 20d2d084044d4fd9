"""How long validating a large spec set takes, against only parsing its YAML.

Generates, in a temporary directory, 50 spec files holding 2,000 volumes, 50 volume
containers, 500 containers (2-4 mounts each: named volumes in short and long form, a bind to
a directory this script creates, an anonymous volume; plus volumes_from to volume
containers) and a few backups. Then times, in one run:

- ``load_spec(DIR)`` in-process (best of 5),
- ``dsr validate DIR`` as a subprocess (best of 3; includes interpreter start-up, which
  ``dsr --version`` measures alone),
- ``yaml.load(..., Loader=yaml.CSafeLoader)`` of the same files (best of 5),

and prints the figures and the ratios to the C loader. The target is a ratio of at most 4
(the in-process one is what ``reconciler.spec`` controls). Exit 0, unless the generated set
fails to validate.

Then two bounds of issue 8, each timed in-process (best of 3) and as ``dsr validate``:

- 1,000 misspelled volume references against 1,000 volumes, every one answered with a
  "did you mean" (target: under 1 s);
- one spec file as large as dsr reads (``MAX_INPUT_BYTES``, 1 MiB) of volumes and
  containers.

    .venv/bin/python bench/validate_scale.py [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from reconciler.errors import SpecError
from reconciler.files import MAX_INPUT_BYTES
from reconciler.spec import describe_counts, load_spec

FILES = 50
VOLUMES = 2000
VOLUME_CONTAINERS = 50
CONTAINERS = 500
BACKUPS = 5
TARGET_RATIO = 4.0
MISSPELLED = 1000
MISSPELLED_TARGET_S = 1.0


def spec_text(index: int, root: Path, rng: random.Random) -> str:
    """File ``index`` of the set: its share of every section."""
    per_file = VOLUMES // FILES
    volumes = [f"vol-{index:02d}-{n:03d}" for n in range(per_file)]
    all_vcs = [f"vc_{n:03d}" for n in range(VOLUME_CONTAINERS)]
    lines = ["version: 1", "project: bench", "", "volumes:"]
    for n, name in enumerate(volumes):
        if n % 4 == 0:
            lines += [f"  {name}:", "    driver: local", "    labels: {tier: data}"]
            lines.append("    reclaim: backup-then-delete" if n % 8 == 0 else "    reclaim: retain")
        else:
            lines.append(f"  {name}: {{}}")
    lines += ["", "volume_containers:"]
    vcs_here = all_vcs[
        index * (VOLUME_CONTAINERS // FILES) : (index + 1) * (VOLUME_CONTAINERS // FILES)
    ]
    for name in vcs_here:
        host = root / "data" / name
        host.mkdir(parents=True, exist_ok=True)
        lines += [
            f"  {name}:",
            "    image: busybox:1.36",
            "    mounts:",
            f"      - ./data/{name}:/srv/{name}:ro",
            "      - /var/cache/app",
            f"      - {volumes[0]}:/opt/tools",
        ]
    lines += ["", "containers:"]
    per_file_containers = CONTAINERS // FILES
    for n in range(per_file_containers):
        name = f"web-{index:02d}-{n:02d}"
        host = root / "data" / name
        host.mkdir(parents=True, exist_ok=True)
        chosen = rng.sample(volumes[1:], 2)
        mounts = [
            f"      - {chosen[0]}:/data",
            "      - type: bind",
            f"        source: ./data/{name}",
            "        target: /usr/local/apache2/htdocs",
            "        read_only: true",
            "      - type: volume",
            f"        source: {chosen[1]}",
            "        target: /data2",
            "        nocopy: true",
            "      - /var/cache/app",
        ]
        keep = rng.randint(2, 4)  # mounts: the first `keep` of the four above
        sizes = [1, 4, 4, 1]
        lines += [
            f"  {name}:",
            "    image: ${HTTPD_IMAGE:-httpd:2.4}",
            "    command: [httpd-foreground]",
            "    env: {LANG: C.UTF-8, TIER: web}",
            f'    ports: ["{8000 + index * 10 + n}:80"]',
            "    restart: unless-stopped",
            "    mounts:",
            *mounts[: sum(sizes[:keep])],
        ]
        first, second = rng.sample(all_vcs, 2)
        lines.append(
            f"    volumes_from: [{first}, '{second}:ro']"
            if n % 2
            else f"    volumes_from: [{first}]"
        )
    if index < BACKUPS:
        lines += [
            "",
            "backups:",
            f"  nightly-{index}:",
            f"    volumes: [{', '.join(volumes[:5])}]",
            f"    paths: [./data/{vcs_here[0]}]",
            '    schedule: "0 3 * * *"',
            "    keep: {last: 3, daily: 7, weekly: 4, monthly: 6, within: 2d}",
        ]
    return "\n".join(lines) + "\n"


def generate(root: Path) -> list[Path]:
    rng = random.Random(20261129)
    files = []
    for index in range(FILES):
        folder = root / "specs" / f"group-{index // 10}"
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"part-{index:02d}.yaml"
        file.write_text(spec_text(index, folder, rng))
        files.append(file)
    return files


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """The best wall time of each run, taking turns so that load on the machine hits all."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def yaml_only(files: list[Path]) -> None:
    for file in files:
        with open(file, "rb") as handle:
            yaml.load(handle.read().decode("utf-8"), Loader=yaml.CSafeLoader)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="print where load_spec spends")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        files = generate(Path(tmp))
        specs = str(Path(tmp) / "specs")
        env = {k: v for k, v in os.environ.items() if k != "HTTPD_IMAGE"}
        try:
            desired = load_spec(specs, env=env)
        except SpecError as err:
            print(f"the generated spec set is invalid:\n{err}", file=sys.stderr)
            return 1
        size = sum(f.stat().st_size for f in files)
        print(f"spec set: {describe_counts(desired)}; {size / 1024:.0f} KiB of YAML")

        command = [sys.executable, "-m", "reconciler", "validate", specs]
        fast = best_of(5, {"c": lambda: yaml_only(files), "in": lambda: load_spec(specs, env=env)})
        c_loader, in_process = fast["c"], fast["in"]
        version = [sys.executable, "-m", "reconciler", "--version"]
        slow = best_of(
            3,
            {
                "cli": lambda: subprocess.run(command, check=True, capture_output=True, env=env),
                "start": lambda: subprocess.run(version, check=True, capture_output=True, env=env),
            },
        )
        cli, start_up = slow["cli"], slow["start"]

        print(f"yaml.load, CSafeLoader (best of 5):   {c_loader * 1000:8.1f} ms")
        print(f"load_spec in-process (best of 5):     {in_process * 1000:8.1f} ms")
        print(f"dsr validate subprocess (best of 3):  {cli * 1000:8.1f} ms")
        print(f"  of which start-up (dsr --version):  {start_up * 1000:8.1f} ms")
        for label, ratio in (
            ("in-process / C loader", in_process / c_loader),
            ("CLI / C loader       ", cli / c_loader),
        ):
            verdict = "met" if ratio <= TARGET_RATIO else "missed"
            print(f"ratio {label}: {ratio:5.2f} (target at most {TARGET_RATIO:g}: {verdict})")
        misspelled_and_largest(Path(tmp), env)
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(load_spec, specs, env=env)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    return 0


def misspelled_text() -> str:
    """1,000 volumes and 100 containers with 10 mounts each, every source one letter off."""
    lines = ["version: 1", "project: bench", "volumes:"]
    lines += [f"  data-{n:04d}: {{}}" for n in range(MISSPELLED)]
    lines.append("containers:")
    for c in range(MISSPELLED // 10):
        lines += [f"  app-{c:03d}:", "    image: busybox:1.36", "    mounts:"]
        lines += [f"      - dta-{c * 10 + m:04d}:/m{m}" for m in range(10)]
    return "\n".join(lines) + "\n"


def largest_text() -> str:
    """A valid spec file just under MAX_INPUT_BYTES: volumes, then containers using them."""
    lines = ["version: 1", "project: bench", "volumes:"]
    size, n = 0, 0
    body: list[str] = []
    while size < MAX_INPUT_BYTES * 0.45:
        entry = f"  vol-{n:06d}: {{labels: {{tier: data, n: '{n}'}}}}"
        body.append(entry)
        size += len(entry) + 1
        n += 1
    containers = ["containers:"]
    c = 0
    while size < MAX_INPUT_BYTES - 400:
        entry = [
            f"  app-{c:06d}:",
            "    image: busybox:1.36",
            "    env: {MODE: 0755, TIME: 12:30}",
            f"    mounts: [vol-{c % n:06d}:/data, /var/cache/app]",
        ]
        containers += entry
        size += sum(len(e) + 1 for e in entry)
        c += 1
    text = "\n".join(lines + body + containers) + "\n"
    assert len(text.encode()) <= MAX_INPUT_BYTES, len(text)
    return text


def misspelled_and_largest(root: Path, env: dict[str, str]) -> None:
    for name, text, valid in (
        ("misspelled", misspelled_text(), False),
        ("largest", largest_text(), True),
    ):
        folder = root / name
        folder.mkdir()
        (folder / "spec.yaml").write_text(text)

        def run(folder: Path = folder, valid: bool = valid) -> None:
            try:
                load_spec(str(folder), env=env)
            except SpecError as err:
                if valid:
                    raise
                assert len(err.issues) == MISSPELLED, len(err.issues)
                assert all("did you mean 'data-" in i.message for i in err.issues)

        command = [sys.executable, "-m", "reconciler", "validate", str(folder)]
        times = best_of(
            3,
            {
                "in": run,
                "cli": lambda command=command: subprocess.run(
                    command, capture_output=True, env=env
                ),
            },
        )
        size = len(text.encode()) / 1024
        if name == "misspelled":
            verdict = "met" if times["in"] < MISSPELLED_TARGET_S else "missed"
            print(
                f"{MISSPELLED} misspelled references, {MISSPELLED} volumes ({size:.0f} KiB): "
                f"in-process {times['in'] * 1000:.1f} ms (target under "
                f"{MISSPELLED_TARGET_S:g} s: {verdict}), dsr validate {times['cli'] * 1000:.1f} ms"
            )
        else:
            print(
                f"largest spec file allowed ({size:.0f} KiB of {MAX_INPUT_BYTES // 1024} KiB): "
                f"in-process {times['in'] * 1000:.1f} ms, dsr validate {times['cli'] * 1000:.1f} ms"
            )


if __name__ == "__main__":
    sys.exit(main())
