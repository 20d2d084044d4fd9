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
from reconciler.spec import describe_counts, load_spec

FILES = 50
VOLUMES = 2000
VOLUME_CONTAINERS = 50
CONTAINERS = 500
BACKUPS = 5
TARGET_RATIO = 4.0


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
        if args.profile:
            profile = cProfile.Profile()
            profile.runcall(load_spec, specs, env=env)
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
