"""How long hashing a large build context takes, cold and warm, against tar of the same tree.

Run from the repository root with the project's venv and a Docker engine:

    .venv/bin/python bench/context_hash.py [--small 20000] [--large 5] [--large-mb 100]

It builds a context of many small files spread over folders and a few large ones in a temp
folder under /tmp, then prints, from one run:

* the first hash: ``pack`` with an empty cache folder (reads every byte);
* the second hash with nothing changed: the same cache, so only a walk and a stat per
  entry (target: under 0.5 s);
* ``dsr plan`` of a spec using that context, nothing changed (applied first: a volume
  container and no consumers; the first apply, which builds the image, is timed too);
* ``tar -cf /dev/null DIR`` of the same folder. GNU tar does not read file data when the
  archive is /dev/null, so this is a walk-and-stat baseline, the fair match for a warm
  hash; ``tar -cf - DIR | cat >/dev/null`` reads everything, the match for a cold one.

Files just written sit in the page cache, so "cold" here means an empty hash cache, not an
empty page cache. Everything the run makes goes at the end: the temp folder, and in Docker
the containers and images labelled with its own project (``dsrbench-<hex>``).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import APIError, NotFound

from reconciler.images import pack
from reconciler.spec.models import Image

SMALL_PER_FOLDER = 100
BLOCK = 4 << 20  # the large files repeat one random block, each copy stamped differently
MIB = 1 << 20


def make_context(ctx: Path, small: int, large: int, large_mb: int) -> None:
    """``small`` files of 64-2048 bytes, 100 to a folder, two levels deep; ``large`` files
    of ``large_mb`` MiB each."""
    for i in range(small):
        folder = ctx / f"d{i // (SMALL_PER_FOLDER * 10):03d}" / f"s{i // SMALL_PER_FOLDER:04d}"
        if i % SMALL_PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = 64 + (i * 37) % 1985
        (folder / f"f{i:05d}.txt").write_bytes(os.urandom(size))
    block = bytearray(os.urandom(BLOCK))
    for n in range(large):
        with open(ctx / f"large-{n}.bin", "wb") as out:
            written = 0
            while written < large_mb * MIB:
                block[:16] = n.to_bytes(8, "little") + written.to_bytes(8, "little")
                chunk = min(BLOCK, large_mb * MIB - written)
                out.write(block[:chunk])
                written += chunk


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"$ {' '.join(argv)}\nexit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def dsr(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "reconciler", "--state-dir", str(state), *args])


def cleanup_docker(client: docker.DockerClient, project: str) -> list[str]:
    """Remove the bench project's containers (with their anonymous volumes) and images."""
    left = []
    label = {"label": f"dsr.project={project}"}
    for container in client.containers.list(all=True, filters=label):
        container.remove(force=True, v=True)
    for volume in client.volumes.list(filters=label):
        volume.remove()
    for image in client.images.list(filters=label):
        for ref in image.tags or [str(image.id)]:
            try:
                client.images.remove(ref, force=False)
            except NotFound:
                pass
            except APIError as err:
                left.append(f"{ref}: {err}")
    left += [str(c.name) for c in client.containers.list(all=True, filters=label)]
    left += [str(i.tags or i.id) for i in client.images.list(filters=label)]
    return left


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=20_000, help="small files (default 20000)")
    parser.add_argument("--large", type=int, default=5, help="large files (default 5)")
    parser.add_argument("--large-mb", type=int, default=100, help="MiB per large file")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each warm measure")
    parser.add_argument("--no-docker", action="store_true", help="skip the dsr apply/plan part")
    options = parser.parse_args()

    project = f"dsrbench-{secrets.token_hex(4)}"
    root = Path(tempfile.mkdtemp(prefix=f"{project}-", dir="/tmp"))
    client = None if options.no_docker else docker.from_env()
    figures: dict[str, float] = {}
    try:
        spec_dir = root / project
        ctx = spec_dir / "ctx"
        ctx.mkdir(parents=True)
        figures["make"] = timed(
            lambda: make_context(ctx, options.small, options.large, options.large_mb)
        )
        entries = sum(1 for _ in ctx.rglob("*"))
        size = du(ctx)
        print(f"context: {ctx}")
        print(f"  {entries} entries, {size / MIB:.0f} MiB, made in {figures['make']:.1f} s")

        image = Image(context=str(ctx), path="/srv/data")
        cache = root / "hash-cache"
        tags: list[str] = []
        figures["first"] = timed(lambda: tags.append(pack(project, "data", image, str(cache)).tag))
        warm = [
            timed(lambda: tags.append(pack(project, "data", image, str(cache)).tag))
            for _ in range(options.repeat)
        ]
        assert len(set(tags)) == 1, "the tag changed with nothing changed"
        figures["second"] = statistics.median(warm)

        tar_null = [
            timed(lambda: run(["tar", "-cf", "/dev/null", "-C", str(spec_dir), "ctx"]))
            for _ in range(options.repeat)
        ]
        figures["tar_null"] = statistics.median(tar_null)
        figures["tar_full"] = timed(
            lambda: run(["sh", "-c", f"tar -cf - -C '{spec_dir}' ctx | cat >/dev/null"])
        )

        if client is not None:
            state = root / "state"
            spec = spec_dir / "dsr.yaml"
            spec.write_text(
                "version: 1\n"
                f"project: {project}\n"
                "images:\n"
                "  data: {context: ./ctx, path: /srv/data}\n"
                "volume_containers:\n"
                f"  {project}-vc: {{image: data}}\n"
            )
            figures["apply"] = timed(lambda: dsr(state, "apply", str(spec)))
            plans = []
            for _ in range(options.repeat):
                started = time.perf_counter()
                result = dsr(state, "plan", str(spec), "--detailed-exitcode")
                plans.append(time.perf_counter() - started)
                assert "No changes" in result.stdout, result.stdout
            figures["plan"] = statistics.median(plans)
            figures["validate"] = statistics.median(
                timed(lambda: dsr(state, "validate", str(spec))) for _ in range(options.repeat)
            )
            figures["startup"] = statistics.median(
                timed(lambda: run([sys.executable, "-c", "import reconciler.cli"]))
                for _ in range(options.repeat)
            )

        report(figures, options.repeat, tags[0])
    finally:
        if client is not None:
            left = cleanup_docker(client, project)
            if left:
                print(f"could not remove: {left}", file=sys.stderr)
            client.close()
        shutil.rmtree(root, ignore_errors=True)


def report(f: dict[str, float], repeat: int, tag: str) -> None:
    def ratio(a: str, b: str) -> str:
        return f"{f[a] / f[b]:.2f}x {b}" if f.get(b) else "n/a"

    print(f"tag: {tag}")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"host: {os.cpu_count()} CPUs, load average {load} (timings include that load)")
    print(f"first hash (empty cache)            {f['first']:8.3f} s   {ratio('first', 'tar_full')}")
    verdict = "ok" if f["second"] < 0.5 else "ABOVE the 0.5 s target"
    print(
        f"second hash (nothing changed)       {f['second']:8.3f} s   "
        f"{ratio('second', 'tar_null')}; median of {repeat}; {verdict}"
    )
    print(f"tar -cf /dev/null (walk+stat)       {f['tar_null']:8.3f} s   median of {repeat}")
    print(f"tar -cf - | cat (reads everything)  {f['tar_full']:8.3f} s")
    if "plan" in f:
        print(f"first dsr apply (builds the image)  {f['apply']:8.3f} s")
        print(
            f"dsr plan (nothing changed)          {f['plan']:8.3f} s   "
            f"{ratio('plan', 'tar_null')}; median of {repeat}"
        )
        print(f"  of which dsr validate             {f['validate']:8.3f} s   (walks once)")
        print(
            f"  of which python + imports         {f['startup']:8.3f} s   (import reconciler.cli)"
        )
        print(f"  plan - validate                   {f['plan'] - f['validate']:8.3f} s")


if __name__ == "__main__":
    main()
