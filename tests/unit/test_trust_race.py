"""Removal under a race: a folder on the way to what prune / reclaim / a refused restore
removes is swapped for a symlink to an outside folder, again and again, while the removal
runs. Nothing outside the destination may ever be removed (``files.remove_below`` walks by
directory descriptors, ``O_NOFOLLOW`` at each step)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.backup import extract, store
from reconciler.files import NotBelow, remove_below

ROUNDS = int(os.environ.get("DSR_RACE_ROUNDS", "100"))


@pytest.fixture(autouse=True)
def _fast_switches() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the swapping thread runs between any two syscalls
    yield
    sys.setswitchinterval(old)


def _fill(folder: Path, depth: int = 2) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "archive.tar.zst", "verify.json"):
        (folder / name).write_text("x")
    if depth:
        _fill(folder / "sub", depth - 1)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


class Swapper:
    """Swaps ``victim`` for a symlink to ``outside`` and back, as fast as it can."""

    def __init__(self, victim: Path, outside: Path) -> None:
        self.victim, self.outside = victim, outside
        self.hidden = victim.with_name(victim.name + ".real")
        self.stop = threading.Event()
        self.swaps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                os.rename(self.victim, self.hidden)
                os.symlink(self.outside, self.victim)
                self.swaps += 1
                os.unlink(self.victim)
                os.rename(self.hidden, self.victim)
            except OSError:  # the victim was removed (a win for the remover): put back
                if not os.path.lexists(self.victim) and self.hidden.exists():
                    os.rename(self.hidden, self.victim)

    def __enter__(self) -> Swapper:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.swaps == 0 and time.monotonic() < deadline:  # the race is running
            time.sleep(0.001)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        if self.victim.is_symlink():
            self.victim.unlink()
        if self.hidden.exists() and not self.victim.exists():
            os.rename(self.hidden, self.victim)


def _race(
    tmp_path: Path, victim_of: Callable[[Path], Path], remove: Callable[[Path, Path], None]
) -> None:
    """``ROUNDS`` times: a snapshot DEST/proj/ID-n, its twin outside (what the link in the
    victim's place would reach), removal while the swapper runs; the outside stays whole."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    swaps = 0
    for n in range(ROUNDS):
        folder = dest / "proj" / f"vol-{n}"
        _fill(folder)
        victim = victim_of(folder)
        # what the link in the victim's place reaches: the same names, outside
        _fill(outside / folder.relative_to(victim) if victim in folder.parents else outside)
        before = _files(outside)
        with Swapper(victim, outside) as swapper:
            remove(dest, folder)
        swaps += swapper.swaps
        assert _files(outside) == before, f"round {n}: a file outside the destination went"
    assert swaps >= ROUNDS  # the race really ran: each round waited for a first swap


VICTIMS = {
    "DEST/PROJECT": lambda folder: folder.parent,
    "DEST/PROJECT/ID": lambda folder: folder,
    "DEST/PROJECT/ID/sub": lambda folder: folder / "sub",
}


@pytest.mark.parametrize("victim", VICTIMS, ids=list(VICTIMS))
def test_prune_removal_never_leaves_the_destination(tmp_path: Path, victim: str) -> None:
    place = store.Folder(str(tmp_path / "dest"))

    def remove(dest: Path, folder: Path) -> None:
        place.remove_unfinished(str(folder))

    _race(tmp_path, VICTIMS[victim], remove)


def test_a_restore_wipe_never_leaves_its_target(tmp_path: Path) -> None:
    def remove(dest: Path, folder: Path) -> None:
        with contextlib.suppress(OSError):  # the same-inode check refused a swap: fine
            extract.wipe(str(folder))

    _race(tmp_path, lambda folder: folder / "sub", remove)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("proj/../../outside/x", "does not lie in"),
        ("..", "does not lie in"),
        (".", "does not lie in"),
        ("link/x", "is not a folder"),
        ("file/x", "is not a folder"),
    ],
)
def test_remove_below_refuses_ways_out(tmp_path: Path, path: str, why: str) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    _fill(dest / "proj")
    _fill(outside / "x")
    (dest / "link").symlink_to(outside)
    (dest / "file").write_text("")
    before = _files(tmp_path)
    with pytest.raises(NotBelow, match=why):
        remove_below(str(dest), str(dest / path))
    assert _files(tmp_path) == before


def test_remove_below_removes_a_link_not_its_target(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    _fill(outside)
    (dest / "proj").mkdir(parents=True)
    (dest / "proj" / "id").symlink_to(outside)
    assert remove_below(str(dest), str(dest / "proj" / "id"))
    assert not (dest / "proj" / "id").is_symlink() and (outside / "manifest.json").exists()
    assert not remove_below(str(dest), str(dest / "proj" / "id"))  # gone already
