"""Peak memory and speed of backup, verify and restore of a volume of very many small files.

    .venv/bin/python bench/many_files.py [--files 1000000] [--one-folder] [--no-store]
                                         [--no-folder] [--keep]

Issue 20 bounds a backup's and a restore's memory (< 150 MB) whatever the volume; this
bench holds it to that for the number of files, where a tree's bookkeeping (one record per
path) is what grows. It makes a managed volume (project ``dsr-h20m-many-<hex>``) and fills it
through its mount point with ``--files`` files (one in three empty, the rest a few bytes)
in three levels of folders (100 files a folder), or with ``--one-folder`` all in one folder
(where a folder's listing is what grows), every 1000th file with a second name (a hard
link), then times, each in its own process (seconds, files per second and peak RSS
from ``wait4``'s rusage):

* ``tar -c | zstd -3`` of the volume's directory: the baseline, in the same run;
* into a folder destination, then (without ``--no-store``) a local SeaweedFS plain and
  encrypted with age: ``dsr backup``, ``dsr backups verify`` of that snapshot, and
  ``dsr restore --into`` a new volume (which checks the archive and reads the written tree
  back).

Prints each step's figures and its time as a ratio to the baseline's; asserts nothing
but that every command succeeds. Removes what it made, also on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

PER_FOLDER = 100
LINK_EVERY = 1000


def fill(root: Path, files: int, one_folder: bool = False) -> int:
    """``files`` files as ``a/b/fNNN`` (100 a folder, 100 folders a level), or all in
    ``all/``; every 1000th gets a hard link beside it. Returns the number of names made."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    names = 0
    folder = ""
    for n in range(files):
        if one_folder:
            if n == 0:
                folder = f"{root}/all"
                os.makedirs(folder)
        elif n % PER_FOLDER == 0:
            folder = f"{root}/{n // (PER_FOLDER * 100):04d}/{n // PER_FOLDER % 100:02d}"
            os.makedirs(folder)
        path = f"{folder}/f{n:07d}"
        fd = os.open(path, flags, 0o644)
        if n % 3:
            os.write(fd, b"%d\n" % n)
        os.close(fd)
        names += 1
        if n % LINK_EVERY == 0:
            os.link(path, f"{folder}/h{n:07d}")
            names += 1
    return names


def timed(
    argv: list[str], env: dict[str, str] | None = None, shell: bool = False
) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of one command after a ``sync``; exits on failure."""
    os.sync()
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # Read both pipes on the side: a chatty child must not block on a full pipe.
    out: list[bytes] = []
    err: list[bytes] = []
    import threading

    readers = [
        threading.Thread(target=lambda: out.append(process.stdout.read())),  # type: ignore[union-attr]
        threading.Thread(target=lambda: err.append(process.stderr.read())),  # type: ignore[union-attr]
    ]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    for reader in readers:
        reader.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        shown = argv[0] if shell else " ".join(argv)
        raise SystemExit(f"{shown} failed ({code}):\n{b''.join(err).decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, b"".join(out).decode()


class Table:
    def __init__(self, names: int, base: float) -> None:
        self.names = names
        self.base = base
        self.peaks: dict[str, float] = {}

    def row(self, step: str, seconds: float, peak: float | None) -> None:
        memory = f"{peak:7.1f} MB peak" if peak is not None else " " * 12
        if peak is not None:
            self.peaks[step] = peak
        print(
            f"  {step:<34} {seconds:8.1f} s {self.names / seconds:9.0f} files/s  {memory}"
            f"  {self.base / seconds:5.2f}x tar|zstd",
            flush=True,
        )


def cycle(
    dsr: list[str],
    spec_dir: Path,
    rule: str,
    volume: str,
    env: dict[str, str],
    table: Table,
    made: list[str],
) -> None:
    """``dsr backup``, ``backups verify`` and ``restore --into`` through one rule."""
    s, peak, out = timed([*dsr, "backup", str(spec_dir), "--policy", rule, "--via", "direct"], env)
    table.row(f"{rule}: backup", s, peak)
    found = re.search(r"-> (\S+) \(", out)
    if not found:
        raise SystemExit(f"no snapshot id in: {out!r}")
    snapshot = found.group(1)
    s, peak, _ = timed([*dsr, "backups", "verify", str(spec_dir), "--backup", snapshot], env)
    table.row(f"{rule}: verify", s, peak)
    into = f"{volume}-{rule}"
    made.append(into)
    argv = [*dsr, "restore", str(spec_dir), volume, "--backup", snapshot, "--into", into]
    s, peak, _ = timed([*argv, "--via", "direct"], env)
    table.row(f"{rule}: restore --into", s, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="leave the volumes and files")
    parser.add_argument("--one-folder", action="store_true", help="every file in one folder")
    parser.add_argument("--store", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--folder", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    project = f"dsr-h20m-many-{secrets.token_hex(3)}"
    volume = f"{project}-data"
    # Removing a volume of a million files takes minutes: the engine answers when done.
    client = docker.APIClient(version="auto", timeout=1800)
    work = Path(tempfile.mkdtemp(prefix="dsr-many-"))
    spec_dir = work / project
    spec_dir.mkdir()
    spec = spec_dir / "dsr.yaml"
    spec.write_text(
        f"version: 1\nvolumes:\n  {volume}: {{}}\nbackups:\n"
        f"  folder:\n    volumes: [{volume}]\n    destination: {work / 'backups'}\n"
    )
    env = {**os.environ, "DSR_STATE_DIR": str(work / "state")}
    made = [volume]
    dsr = [sys.executable, "-m", "reconciler"]
    server = None
    try:
        subprocess.run([*dsr, "apply", str(spec_dir)], env=env, check=True, capture_output=True)
        mount = Path(client.inspect_volume(volume)["Mountpoint"])
        started = time.perf_counter()
        names = fill(mount, args.files, args.one_folder)
        folders = 1 if args.one_folder else args.files // PER_FOLDER
        print(
            f"volume {volume}: {args.files} files ({names} names with the hard links) in "
            f"{folders} folders, made in {time.perf_counter() - started:.0f} s;"
            f" {os.cpu_count()} CPUs, load {os.getloadavg()}",
            flush=True,
        )
        archive = work / "tar.zst"
        base, _, _ = timed([f"tar -C {mount} -cf - . | zstd -3 -q -f -o {archive}"], shell=True)
        table = Table(names, base)
        table.row("tar -c | zstd -3 (baseline)", base, None)
        if args.folder:
            cycle(dsr, spec_dir, "folder", volume, env, table, made)
        if args.store:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from s3server import S3Server

            server = S3Server.start(work / "s3")
            server.make_bucket("dsr-many")
            key = work / "age-key.txt"
            keygen = subprocess.run(["age-keygen", "-o", str(key)], capture_output=True, text=True)
            recipient = keygen.stderr.split("Public key: ")[1].strip()
            spec.write_text(
                spec.read_text()
                + f"  s3plain:\n    volumes: [{volume}]\n    destination: s3://dsr-many/plain\n"
                f"    endpoint: {server.endpoint}\n"
                f"  s3age:\n    volumes: [{volume}]\n    destination: s3://dsr-many/age\n"
                f"    endpoint: {server.endpoint}\n    encrypt_to: [{recipient}]\n"
            )
            senv = {**env, **server.env(), "DSR_AGE_IDENTITY": str(key)}
            for rule in ("s3plain", "s3age"):
                cycle(dsr, spec_dir, rule, volume, senv, table, made)
        worst = max(table.peaks.values(), default=0.0)
        print(f"\nhighest peak: {worst:.1f} MB (target < 150 MB); load after: {os.getloadavg()}")
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
            for name in made:
                with contextlib.suppress(docker.errors.APIError):
                    # Emptied from here first: the engine removing a million files itself
                    # holds its volume lock for minutes, and other users' calls time out.
                    inside = client.inspect_volume(name)["Mountpoint"]
                    subprocess.run(["find", inside, "-mindepth", "1", "-delete"], check=False)
                    client.remove_volume(name, force=True)
        client.close()


if __name__ == "__main__":
    main()
