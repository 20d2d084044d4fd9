"""The second process that writes a restore's small files: exact files, its errors said
with the file's name, never a write through a link, and it never outlives its parent."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler.backup import writer
from reconciler.backup.tree import FILE, Entry


def _file(path: str, mode: int = 0o644, mtime: int = 1_600_000_000) -> Entry:
    return Entry(path, FILE, mode, os.getuid(), os.getgid(), mtime)


def test_small_files_come_back_with_their_bytes_modes_and_times(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with writer.SmallFiles(str(tmp_path)) as small:
        assert small.alive
        for n in range(300):  # more than one batch
            small.offer(
                _file(f"sub/f{n}", 0o600 + n % 8, 1_000_000 + n), bytes([n % 256]) * n, wait=True
            )
        small.offer(_file("setuid", 0o4755), b"#!/bin/sh\n", wait=True)
        small.offer(_file("empty", 0o444), b"", wait=True)
        small.offer(_file("caf\udce9"), b"latin-1 name", wait=True)  # not UTF-8
        small.finish()
    for n in range(300):
        st = os.lstat(tmp_path / "sub" / f"f{n}")
        assert (tmp_path / "sub" / f"f{n}").read_bytes() == bytes([n % 256]) * n
        assert stat.S_IMODE(st.st_mode) == 0o600 + n % 8 and st.st_mtime == 1_000_000 + n
    assert stat.S_IMODE(os.stat(tmp_path / "setuid").st_mode) == 0o4755
    assert os.path.getsize(tmp_path / "empty") == 0
    assert (tmp_path / os.fsdecode(b"caf\xe9")).read_bytes() == b"latin-1 name"


def test_a_writer_behind_refuses_files_and_the_ones_it_took_are_written(
    tmp_path: Path,
) -> None:
    with writer.SmallFiles(str(tmp_path)) as small:
        assert small.process is not None
        small.process.send_signal(signal.SIGSTOP)  # it takes nothing from the pipe now
        try:
            taken = 0
            while small.offer(_file(f"f{taken}"), bytes(4000)):
                taken += 1
                assert taken < 10_000, "the pipe never filled"
        finally:
            small.process.send_signal(signal.SIGCONT)
        small.finish()
    assert sorted(os.listdir(tmp_path)) == sorted(f"f{n}" for n in range(taken))
    assert taken * 4000 >= writer.BATCH


def test_settle_makes_the_files_sent_exist_before_a_hard_link(tmp_path: Path) -> None:
    with writer.SmallFiles(str(tmp_path)) as small:
        small.offer(_file("a"), b"shared", wait=True)
        small.settle()
        os.link(tmp_path / "a", tmp_path / "b")  # fails if "a" did not exist yet
        small.finish()
    assert os.stat(tmp_path / "b").st_ino == os.stat(tmp_path / "a").st_ino


def test_a_link_planted_at_a_files_name_is_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "x").symlink_to(outside / "victim")
    with writer.SmallFiles(str(root)) as small:
        small.offer(_file("fine"), b"ok", wait=True)
        small.offer(_file("x"), b"attack", wait=True)
        with pytest.raises(OSError) as caught:
            small.finish()
    assert caught.value.errno == errno.EEXIST
    assert caught.value.filename == os.path.join(str(root), "x")
    assert not (outside / "victim").exists()
    assert (root / "fine").read_bytes() == b"ok"


def test_its_first_error_stops_it_and_reaches_the_sender(tmp_path: Path) -> None:
    with writer.SmallFiles(str(tmp_path)) as small:
        small.offer(_file("missing-folder/f"), b"x", wait=True)
        with pytest.raises(OSError) as caught:  # raised at a send or at the end
            for n in range(2000):
                small.offer(_file(f"later{n}"), bytes(1000), wait=True)
            small.finish()
    assert caught.value.errno == errno.ENOENT
    assert "missing-folder/f" in str(caught.value.filename)
    assert not list(tmp_path.glob("later*"))


def test_it_dies_with_a_sigkilled_parent(tmp_path: Path) -> None:
    # A forked child of the parent keeps the pipe to the writer open: the writer sees no
    # end of its input, so only its parent's death can stop it.
    parent = textwrap.dedent(
        f"""
        import os, sys, time
        from reconciler.backup import writer
        from reconciler.backup.tree import FILE, Entry
        small = writer.SmallFiles({str(tmp_path)!r})
        small.offer(Entry("ready", FILE, 0o644, os.getuid(), os.getgid(), 0), b"", wait=True)
        small.settle()  # it has started, and waits for more
        holder = os.fork()
        if holder == 0:
            time.sleep(600)
            os._exit(0)
        print(small.process.pid, holder, flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    child, holder = map(int, process.stdout.readline().split())
    try:
        assert not _gone(child)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for _ in range(500):  # wait until it is gone (or a zombie no one reaps)
            if _gone(child):
                break
            time.sleep(0.02)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail("the writer outlived its SIGKILLed parent")
    finally:
        os.kill(holder, signal.SIGKILL)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_a_stream_cut_in_the_middle_of_a_file_writes_no_part_of_it(tmp_path: Path) -> None:
    with writer.SmallFiles(str(tmp_path)) as small:
        assert small.process is not None and small.process.stdin is not None
        head = writer._HEAD.pack(writer._FILE, 0o644, os.getuid(), os.getgid(), 0, 100, 4)
        small.process.stdin.write(head + b"half" + bytes(50))  # 50 of its 100 bytes
        small.process.stdin.close()
        assert small.process.wait() == 1
    assert not (tmp_path / "half").exists()
