"""``read_tar`` remembers paths as fingerprints now, not in a dict: it must refuse exactly
what it refused before (duplicates, an entry whose folder is not an earlier directory, a
hard link to anything but an earlier file or hard link) and accept the rest."""

from __future__ import annotations

import io
import posixpath
import tarfile

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reconciler.backup import archive
from reconciler.backup.errors import ArchiveError

KINDS = {
    "dir": tarfile.DIRTYPE,
    "file": tarfile.REGTYPE,
    "hardlink": tarfile.LNKTYPE,
    "symlink": tarfile.SYMTYPE,
    "fifo": tarfile.FIFOTYPE,
}
PATHS = st.lists(st.sampled_from(["a", "b", "c", "é", "\udcff"]), min_size=1, max_size=3).map(
    "/".join
)


def _archive(entries: list[tuple[str, str, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for path, kind, link in entries:
            info = tarfile.TarInfo(path)
            info.type, info.linkname = KINDS[kind], link
            tar.addfile(info, io.BytesIO(b"") if kind == "file" else None)
    return buffer.getvalue()


def _before(entries: list[tuple[str, str, str]]) -> tuple[int, str]:
    """What ``read_tar`` did with a dict of every path's kind: (entries read, refusal)."""
    kinds = {".": "dir"}
    for n, (path, kind, link) in enumerate(entries):
        if path in kinds:
            return n, f"entry {path!r} appears twice"
        if kinds.get(posixpath.dirname(path) or ".") != "dir":
            return n, f"entry {path!r}: its folder is not an earlier directory entry"
        if kind == "hardlink" and kinds.get(link) not in ("file", "hardlink"):
            return n, f"hard link {path!r} leads to {link!r}, not an earlier file"
        kinds[path] = kind
    return len(entries), ""


def _now(entries: list[tuple[str, str, str]]) -> tuple[int, str]:
    read = 0
    try:
        for _entry, content in archive.read_tar(io.BytesIO(_archive(entries))):
            for _ in content:
                pass
            read += 1
    except ArchiveError as err:
        return read - 1, str(err)
    return read - 1, ""  # the root is not one of ``entries``


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[str, str, str]]:
    """Mostly valid streams (entries under earlier folders, links to earlier entries), so
    that refusals come late, after many kinds of entries; now and then anything."""
    entries: list[tuple[str, str, str]] = []
    dirs = [""]
    for _ in range(draw(st.integers(0, 30))):
        if draw(st.integers(0, 9)) == 0:
            path = draw(PATHS)  # anywhere: a missing folder, a duplicate
        else:
            name = draw(st.sampled_from(["a", "b", "c", "é", "\udcff"]))
            path = posixpath.join(draw(st.sampled_from(dirs)), name)
        kind = draw(st.sampled_from(list(KINDS)))
        link = "x" if kind == "symlink" else ""
        if kind == "hardlink":  # to an earlier entry (mostly), or a later, missing one
            earlier = [p for p, _, _ in entries]
            link = draw(st.sampled_from(earlier) if earlier and draw(st.booleans()) else PATHS)
        if kind == "dir":
            dirs.append(path)
        entries.append((path, kind, link))
    return entries


@settings(max_examples=400, deadline=None)
@given(entries=streams())
@example([("a", "file", ""), ("b", "hardlink", "a"), ("c", "hardlink", "b")])
@example([("d", "dir", ""), ("h", "hardlink", "d")])
@example([("s", "symlink", "x"), ("f", "fifo", ""), ("h", "hardlink", "s")])
@example([("f", "fifo", ""), ("h", "hardlink", "f")])
@example([("h", "hardlink", "f"), ("f", "file", "")])
@example([("a", "file", ""), ("a", "dir", "")])
@example([("a", "dir", ""), ("a", "file", "")])
@example([("a", "file", ""), ("a/b", "file", "")])
@example([("a", "dir", ""), ("a/b", "dir", ""), ("a/b/c", "file", ""), ("a/c/d", "file", "")])
def test_fingerprints_refuse_what_the_dict_of_kinds_refused(
    entries: list[tuple[str, str, str]],
) -> None:
    assert _now(entries) == _before(entries)


def test_many_paths_fit_in_a_table_of_8_bytes_a_slot() -> None:
    seen = archive._Seen()
    seen.add(".", "dir")
    seen.add("d", "dir")
    for n in range(200_000):
        seen.add(f"d/f{n}", "file" if n % 2 else "symlink")
    assert len(seen._table) <= 200_000 * 9 // 4  # at most 2/3 full after growing 1.5x
    assert all(f"d/f{n}" in seen for n in range(0, 200_000, 997))
    assert all(seen.linkable(f"d/f{n}") == (n % 2 == 1) for n in range(0, 200_000, 991))
    assert "d/f200000" not in seen and not seen.linkable("d/f-1")


def test_the_table_grows_by_half_so_the_old_and_new_together_stay_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While it grows, the old table and the new one are both held: growing by 1.5x keeps
    that at 2.5x the old table's bytes (doubling held 3x, a jump of 48 MB at 1.4M entries)."""
    sizes: list[int] = []
    real = archive._Seen._grow

    def grow(self: archive._Seen) -> None:
        before = len(self._table)
        real(self)
        sizes.append(len(self._table))
        assert before + len(self._table) <= before * 5 // 2
        assert self._used * 2 < len(self._table)  # under half full just after (44 %)
        assert self._used * 3 > before * 2  # grown only once 2/3 full

    monkeypatch.setattr(archive._Seen, "_grow", grow)
    seen = archive._Seen()
    seen.add("d", "dir")
    for n in range(50_000):
        seen.add(f"d/f{n}", "file")
    assert len(sizes) >= 8
    assert len(seen._table) * 2 <= 50_000 * 3 * 3 // 2  # never more than 2/3 * 1.5 slack
    assert all(f"d/f{n}" in seen for n in range(50_000))


def test_a_hard_link_sharing_a_files_fingerprint_still_cannot_lead_through_a_symlink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fingerprint collision (forced here) cannot point a hard link through a symbolic
    link to a file outside the tree: the link's folders are checked exactly."""
    real = archive._Seen._print

    def colliding(path: str) -> int:
        return real("f") if path == "s/etc/shadow" else real(path)

    monkeypatch.setattr(archive._Seen, "_print", staticmethod(colliding))
    stream = [("f", "file", ""), ("s", "symlink", "/"), ("h", "hardlink", "s/etc/shadow")]
    assert _now(stream) == (2, "hard link 'h' leads to 's/etc/shadow', not an earlier file")
