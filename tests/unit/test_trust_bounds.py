"""Issue 17, class 3: work with a bound. Each case is input crafted to make dsr work far
more than its size suggests; each must be answered (accepted or refused) in under 2 s."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from reconciler.backup.errors import ArchiveError
from reconciler.backup.prefetch import scan
from reconciler.globmatch import BadPattern, Glob


def _quick(start: float) -> None:
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "pattern",
    [
        "**/**/**/**/**/**/**/**/zzz",
        "*" * 200 + "z",
        "**/" * 300 + "z",
        "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b",
        "?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*x",
    ],
)
def test_an_ignore_pattern_is_matched_in_linear_time(pattern: str) -> None:
    start = time.perf_counter()
    for path in ("a/" * 60 + "y", "a" * 2000, "a/" * 500, "x" * 100 + "/" + "a" * 100):
        assert Glob(pattern).match(path) is False
    _quick(start)


def test_an_ignore_file_with_a_pathological_pattern_is_walked_quickly(tmp_path: Path) -> None:
    from reconciler.images import entries

    deep = tmp_path / "/".join(["d"] * 30)
    deep.mkdir(parents=True)
    (deep / "zzy").write_text("x")
    (tmp_path / ".dockerignore").write_text("**/**/**/**/**/**/**/**/zzz\n" * 50)
    start = time.perf_counter()
    assert "/".join(["d"] * 30) + "/zzy" in list(entries(str(tmp_path)))
    _quick(start)


def test_a_bad_class_is_refused() -> None:
    with pytest.raises(BadPattern):
        Glob("[z-a]")


_CHARS = st.sampled_from(list("ab/.*?[]!^-\\Z"))
_PATH = st.sampled_from(list("ab/.-Z[]\\!"))


@seed(17)
@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(_CHARS, max_size=10), st.text(_PATH, max_size=10))
def test_the_linear_matcher_agrees_with_docker_py(pattern: str, path: str) -> None:
    """Same answers as docker-py's regular expressions (which are right, only slow)."""
    import re

    from docker.utils.fnmatch import fnmatch

    try:
        want = fnmatch(path, pattern)
    except re.error:
        with pytest.raises(BadPattern):
            Glob(pattern)
        return
    assert Glob(pattern).match(path) == want, (pattern, path)


def _archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(zstandard.ZstdCompressor().compress(plain.getvalue()))


def _dir(name: str = ".", **pax: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.pax_headers = pax
    return info, None


def _file(name: str, data: bytes, **pax: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.pax_headers = pax
    return info, data


def test_an_entry_larger_than_its_manifest_is_refused_before_it_is_hashed(
    tmp_path: Path,
) -> None:
    """The header's size is compared first: 8 GiB of zeros compress to a few MB, and
    hashing them would take a minute."""
    archive = tmp_path / "a.tar.zst"
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir()[0])
        big = tarfile.TarInfo("big")
        big.size = 8 << 30
        plain.write(big.tobuf(tarfile.PAX_FORMAT))
    cctx = zstandard.ZstdCompressor()
    with open(archive, "wb") as out, cctx.stream_writer(out) as writer:
        writer.write(plain.getvalue())
        zero = bytes(1 << 20)
        for _ in range(64):  # 64 MiB of the 8 GiB: enough to take seconds if hashed
            writer.write(zero)
    start = time.perf_counter()
    with pytest.raises(ArchiveError, match="holds more than its manifest records"):
        scan(str(archive), most=(1000, 10))
    _quick(start)


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ([_dir(), _file("f", b"x", mtime="nan")], "modification time out of range"),
        ([_dir(), _file("f", b"x", mtime="1e300")], "modification time out of range"),
        ([_dir(), _file("f", b"x", uid="-1")], "owner or size out of range"),
        ([_dir(), _file("f", b"x", uid=str(1 << 40))], "owner or size out of range"),
        ([_dir(**{f"k{i}": "v" for i in range(300)})], "PAX keys"),
        ([_dir(), *(_file(f"f{i}", b"", comment="x" * 60_000) for i in range(200))], "MiB of"),
    ],
)
def test_hostile_pax_headers_are_refused_quickly(
    members: list[tuple[tarfile.TarInfo, bytes | None]], words: str, tmp_path: Path
) -> None:
    archive = tmp_path / "a.tar.zst"
    _archive(archive, members)
    start = time.perf_counter()
    with pytest.raises(ArchiveError, match=words):
        scan(str(archive))
    _quick(start)


def test_many_small_pax_records_cost_little(tmp_path: Path) -> None:
    """46 KB of one-byte-apart PAX records: linear, not quadratic."""
    archive = tmp_path / "a.tar.zst"
    members = [_dir()] + [_file(f"f{i}", b"", **{f"k{i % 50}": "v"}) for i in range(3000)]
    _archive(archive, members)
    start = time.perf_counter()
    scan(str(archive))
    _quick(start)
    assert os.path.getsize(archive) < 1 << 20


def test_patterns_that_cost_too_much_against_a_context_stop_with_a_named_error(
    tmp_path: Path,
) -> None:
    from reconciler.files import InputFileError
    from reconciler.images import context_problems, entries

    for n in range(300):  # long names: each match of the pattern below costs ~10^5 steps
        (tmp_path / ("a" * 200 + str(n))).touch()
    (tmp_path / ".dockerignore").write_text("*a" * 500 + "b\n")
    start = time.process_time()  # CPU: the machine may be shared
    with pytest.raises(InputFileError, match="simplify them"):
        list(entries(str(tmp_path)))
    [problem] = context_problems(str(tmp_path))
    assert ".dockerignore" in problem and "steps" in problem
    assert time.process_time() - start < 4.0
    # an ordinary ignore file over the same context costs nothing like it
    (tmp_path / ".dockerignore").write_text("**/*.pyc\n*.tmp\n!keep.tmp\n**/node_modules\n")
    assert len(list(entries(str(tmp_path)))) == 301
