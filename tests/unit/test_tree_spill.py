"""The tree digest written out in sorted runs gives exactly the digest it gave in memory.

``Reference`` is the digest as it was computed before runs existed (every entry in a
dict, hashed sorted at the end): manifests made then must keep verifying, so the two must
agree on any tree, in any order of adding, with any number of runs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.backup import staging, tree
from reconciler.backup.tree import DIR, FIFO, FILE, HARDLINK, SYMLINK, Entry, TreeDigest
from reconciler.backup.tree import _json as encode


class Reference:
    """The in-memory digest of before (kept here verbatim in substance)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.leader: dict[str, str] = {}

    def add(self, e: Entry) -> None:
        if e.kind == HARDLINK:
            self.leader[e.path] = self.leader.get(e.link, e.link)
        self.entries[e.path] = e

    def hexdigest(self) -> str:
        groups: dict[str, list[str]] = {}
        for path, leader in self.leader.items():
            groups.setdefault(leader, [leader]).append(path)
        first = {p: min(members) for members in groups.values() for p in members}
        digest = hashlib.sha256()
        for path in sorted(self.entries):
            e = self.entries[path]
            if e.kind == HARDLINK:
                e = self.entries[self.leader[path]]
            link = first.get(path, "") if e.kind == FILE else e.link
            digest.update(
                f"[{encode(path)}, {encode(e.kind)}, {e.mode}, {e.uid}, {e.gid}, {e.size}, "
                f"{encode(e.sha256)}, {encode(link)}, {e.mtime}]\n".encode()
            )
        return digest.hexdigest()


NAMES = st.sampled_from(["a", "b", "é", "\udcff", 'q"\n', "日本", "a b", "z" * 120])


@st.composite
def trees(draw: st.DrawFn) -> list[Entry]:
    """Entries of a tree with unique paths; hard links after the file they name."""
    paths = draw(st.lists(st.lists(NAMES, min_size=1, max_size=3), max_size=40))
    unique = sorted({"/".join(p) for p in paths})
    order = draw(st.permutations(unique))
    entries = [Entry(".", DIR, 0o755, 0, 0, 1)]
    linkable: list[str] = []
    for path in order:
        kind = draw(st.sampled_from([DIR, FILE, FILE, SYMLINK, FIFO, HARDLINK]))
        if kind == HARDLINK and not linkable:
            kind = FILE
        mode, uid, mtime = draw(st.integers(0, 0o7777)), draw(st.integers(0, 70000)), 17
        if kind == HARDLINK:
            link = draw(st.sampled_from(linkable))
            entries.append(Entry(path, HARDLINK, 0o644, 0, 0, mtime, 0, link))
        elif kind == FILE:
            size = draw(st.integers(0, 1 << 40))
            sha = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()
            entries.append(Entry(path, FILE, mode, uid, uid, mtime, size, "", sha))
        elif kind == SYMLINK:
            entries.append(Entry(path, SYMLINK, 0o777, uid, 0, mtime, 0, draw(NAMES)))
        else:
            entries.append(Entry(path, kind, mode, uid, 0, mtime))
        if kind in (FILE, HARDLINK):
            linkable.append(path)
    return entries


def _open_in(folder: Path) -> list[str]:
    """This process's descriptors of files (removed or not) in ``folder``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@settings(max_examples=300, deadline=None)
@given(entries=trees(), run=st.integers(1, 7), fan_in=st.integers(2, 5))
def test_runs_give_the_digest_the_tree_gave_in_memory(
    entries: list[Entry], run: int, fan_in: int
) -> None:
    reference = Reference()
    spilled = TreeDigest(run=run, fan_in=fan_in)
    whole = TreeDigest()
    for entry in entries:
        reference.add(entry)
        spilled.add(entry)
        whole.add(entry)
    expected = reference.hexdigest()
    assert whole.hexdigest() == expected
    assert spilled.hexdigest() == expected
    assert spilled.files == whole.files and spilled.size == whole.size


@pytest.mark.parametrize(("fan_in", "runs"), [(1000, 99), (64, 99 - 63), (3, 1)])
def test_a_tree_of_many_runs_leaves_no_file_and_no_descriptor(
    tmp_path: Path, fan_in: int, runs: int
) -> None:
    tree = TreeDigest(run=10, folder=str(tmp_path), fan_in=fan_in)
    reference = Reference()
    entries = [Entry(".", DIR, 0o755, 0, 0, 1)]
    entries += [Entry(f"f{n}", FILE, 0o644, 0, 0, 1, n, "", f"{n:064x}") for n in range(995)]
    entries += [Entry(f"h{n}", HARDLINK, 0o644, 0, 0, 1, 0, f"f{n * 7}") for n in range(100)]
    for entry in entries:
        tree.add(entry)
        reference.add(entry)
    assert len(tree._runs.files) == runs  # the hard links are held apart; merged past fan_in
    assert len(_open_in(tmp_path)) == runs  # the runs are open files, named nowhere
    assert os.listdir(tmp_path) == []
    assert tree.hexdigest() == reference.hexdigest()
    assert _open_in(tmp_path) == []
    assert tree.hexdigest() == reference.hexdigest()  # the digest is kept
    with pytest.raises(ValueError, match="digest was taken"):
        tree.add(Entry("late", FILE, 0o644, 0, 0, 1))


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (Entry("f3", FIFO, 0o644, 0, 0, 1), "'f3' appears twice"),  # in another run
        (Entry("h", HARDLINK, 0o644, 0, 0, 1, 0, "missing"), "not an earlier file"),
        (Entry("h", HARDLINK, 0o644, 0, 0, 1, 0, "d"), "not an earlier file"),
        (Entry("f44", HARDLINK, 0o644, 0, 0, 1, 0, "f2"), "'f44' appears twice"),
    ],
)
def test_a_refused_tree_closes_its_runs(tmp_path: Path, extra: Entry, refusal: str) -> None:
    tree = TreeDigest(run=4, folder=str(tmp_path))
    tree.add(Entry("d", DIR, 0o755, 0, 0, 1))
    for n in range(50):
        tree.add(Entry(f"f{n}", FILE, 0o644, 0, 0, 1))
    tree.add(extra)
    assert _open_in(tmp_path)
    with pytest.raises(ValueError, match=refusal):
        tree.hexdigest()
    assert _open_in(tmp_path) == []


def test_a_tree_closed_early_leaves_nothing(tmp_path: Path) -> None:
    with TreeDigest(run=2, folder=str(tmp_path)) as tree:
        for n in range(9):
            tree.add(Entry(f"f{n}", FILE, 0o644, 0, 0, 1))
        assert _open_in(tmp_path)
        # an error here (a failed backup) leaves the block
    assert _open_in(tmp_path) == []


def test_a_large_folders_names_come_sorted_through_runs_in_the_spill_folder(
    tmp_path: Path,
) -> None:
    """A folder of more names than ``LISTED`` is not held whole: its names are sorted in
    parts written to unnamed files (in the staging folder's ``PID-spill/``) and merged."""
    folder, spill = tmp_path / "many", tmp_path / "staging" / f"{os.getpid()}-spill"
    folder.mkdir()
    names = [os.urandom(6).hex().encode() for _ in range(1000)] + [b"\xff-not-utf8", b"a"]
    for name in names:
        (folder / os.fsdecode(name)).touch()
    with staging.spilling(str(tmp_path / "staging")):
        listed = tree._listed(str(folder), most=64)
        first = next(listed)
        assert len(_open_in(spill)) == 1000 // 64 + 1  # one run open per part
        assert os.listdir(spill) == []  # named nowhere
    assert [first, *listed] == sorted(names)
    assert _open_in(spill) == []
    small = tree._listed(str(folder), most=5000)
    assert list(small) == sorted(names)


def test_a_walk_through_a_large_folder_gives_what_a_whole_listing_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "b").mkdir(parents=True)
    for n in range(300):
        (root / "b" / f"f{n:03d}").write_text("x")
        (root / f"g{n}").mkdir()
    whole = [found.entry.path for found in tree.walk(str(root))]
    monkeypatch.setattr(tree, "LISTED", 7)
    assert [found.entry.path for found in tree.walk(str(root))] == whole
    assert whole[:3] == [".", "b", "b/f000"]


def test_a_backups_runs_spill_in_the_state_directorys_staging(tmp_path: Path) -> None:
    state = tmp_path / "staging"
    with staging.spilling(str(state)):
        spill = state / f"{os.getpid()}-spill"
        digest = TreeDigest(run=2)
        for n in range(9):
            digest.add(Entry(f"f{n}", FILE, 0o644, 0, 0, 1))
        assert len(_open_in(spill)) == 4
        assert os.listdir(spill) == []
        digest.close()
    assert not spill.exists()
    digest = TreeDigest(run=2)  # outside: tempfile's folder again
    for n in range(3):
        digest.add(Entry(f"f{n}", FILE, 0o644, 0, 0, 1))
    assert _open_in(state) == []
    digest.close()


def test_a_killed_run_leaves_no_spilled_file_and_the_next_removes_its_folder(
    tmp_path: Path,
) -> None:
    state = tmp_path / "staging"
    script = (
        "import os, sys, time\n"
        "from reconciler.backup import staging\n"
        "from reconciler.backup.tree import FILE, Entry, TreeDigest\n"
        "with staging.spilling(sys.argv[1]):\n"
        "    tree = TreeDigest(run=10)\n"
        "    for n in range(1000):\n"
        "        tree.add(Entry(f'f{n}', FILE, 0o644, 0, 0, 1))\n"
        "    print('spilled', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "spilled\n"
        spill = state / f"{child.pid}-spill"
        assert len(os.listdir(f"/proc/{child.pid}/fd")) > 100  # its runs are open
    finally:
        child.kill()
        child.wait()
    assert spill.is_dir() and list(spill.iterdir()) == []  # SIGKILL: no file left
    with staging.spilling(str(state)):
        pass
    assert os.listdir(state) == []  # the next run took the dead one's folder away


def test_backups_on_several_threads_share_the_spill_folder_until_the_last_ends(
    tmp_path: Path,
) -> None:
    """The applier backs up several volumes at once on its threads: one ending does not
    take the folder from under the others; the last one removes it."""
    state = tmp_path / "staging"
    spill = state / f"{os.getpid()}-spill"
    first, second = staging.spilling(str(state)), staging.spilling(str(state))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert spill.is_dir()
    digest = TreeDigest(run=2)
    for n in range(5):
        digest.add(Entry(f"f{n}", FILE, 0o644, 0, 0, 1))
    assert len(_open_in(spill)) == 2
    digest.close()
    second.__exit__(None, None, None)
    assert not spill.exists()
    assert tree._spill_folder is None
