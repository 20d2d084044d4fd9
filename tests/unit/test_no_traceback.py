"""Issue 17, class 5: no input ends in a traceback, a hang, or a write outside the test's
folders. A property test (fixed seed, a time budget) feeds the CLI's parsers random and
adversarial arguments, and the manifest and archive readers random and mutated files; a
table test holds the cases seen, one each.

Every write dsr makes during a run is watched with an audit hook (``open`` for writing,
``mkdir``, ``rename``, ``remove``, ``rmtree``, links): one outside the test's folder fails
the test. A run longer than 2 s is stopped by an alarm and fails it too.

``DSR_PROPERTY_BUDGET`` (seconds per property, default 20) and ``DSR_PROPERTY_EXAMPLES``
make a longer hunt; the seed stays fixed, so CI runs the same inputs every time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from reconciler.backup.errors import BackupError
from reconciler.backup.manifest import Manifest, ManifestError, parse_manifest
from reconciler.backup.prefetch import scan
from reconciler.cli import main

BUDGET = float(os.environ.get("DSR_PROPERTY_BUDGET", "20"))
EXAMPLES = int(os.environ.get("DSR_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
HANG = 2.0  # seconds


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so that no ``except Exception`` hides it."""


class _Watch:
    """Writes outside ``roots`` while ``active``, as the audit hook sees them."""

    def __init__(self) -> None:
        self.active = False
        self.roots: tuple[str, ...] = ()
        self.outside: list[str] = []

    def allowed(self, path: Any) -> bool:
        if isinstance(path, int) or path is None:
            return True  # a descriptor: its open was seen
        text = os.fsdecode(path)
        full = os.path.realpath(os.path.join(os.getcwd(), text))
        return text == "/dev/null" or any(full.startswith(r) for r in self.roots)

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        paths: list[Any] = []
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writes:
                paths.append(path)
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
            paths.append(args[0])
        elif event in ("os.rename", "os.link", "os.symlink"):
            paths += [args[1]]
        for path in paths:
            if not self.allowed(path):
                self.outside.append(f"{event} {path!r}")


WATCH = _Watch()
sys.addaudithook(WATCH)


@contextlib.contextmanager
def watched(root: Path) -> Iterator[None]:
    """Writes only under ``root``; at most ``HANG`` seconds."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang()

    WATCH.outside = []
    WATCH.roots = (os.path.realpath(root) + os.sep,)
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG * 2)  # the assertion below says 2 s
    WATCH.active = True
    start = time.perf_counter()
    try:
        yield
    except Hang:
        pytest.fail(f"a run took over {HANG * 2} s")
    finally:
        WATCH.active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < HANG or os.environ.get("CI_SLOW"), "over 2 s"
    assert not WATCH.outside, WATCH.outside


def run_cli(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with watched(root), pytest.raises(SystemExit) as done:
        main(argv)
    out, err = capsys.readouterr()
    text = out + err
    assert "Traceback" not in text, text
    assert "internal error" not in text, text
    code = done.value.code
    assert code in (0, 1, 2, 3, None), (code, text)
    return int(code or 0), text


class _Budget:
    def __init__(self) -> None:
        self.start: float | None = None

    def spent(self) -> bool:
        if self.start is None:
            self.start = time.monotonic()
        return time.monotonic() - self.start > BUDGET


@pytest.fixture
def home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a spec set, a host folder to back up, and the environment pointed
    inside it (state dir, HOME, TMPDIR, an engine socket that does not exist)."""
    root = tmp_path_factory.mktemp("t17cli")
    (root / "data").mkdir()
    (root / "data" / "f").write_text("x")
    spec = root / "t17"
    spec.mkdir()
    (spec / "spec.yaml").write_text(
        f"version: 1\nvolumes:\n  v: {{}}\nbackups:\n  b:\n    paths: [{root}/data]\n"
        f"    destination: {root}/dest\n"
    )
    os.mkfifo(root / "fifo")  # a file that would hang whoever opens it to read
    (root / "deep.json").write_text('{"kind": "dsr-saved-plan", "x": ' + "[" * 100_000 + "]")
    for name, value in {
        "DSR_STATE_DIR": str(root / "state"),
        "HOME": str(root),
        "TMPDIR": str(root),
        "XDG_STATE_HOME": str(root / "xdg"),
        "DOCKER_HOST": f"unix://{root}/no-engine.sock",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(root)
    return root


# Values seen to break a parser somewhere, and their neighbours.
HOSTILE = [
    "nan", "inf", "-inf", "-1", "1e400", "0x10", "", " ", "9" * 5000, "\x1b[2J", "\u202e",
    "\x00", "localhost:abc", "[::1", "http://[::1", "tcp://localhost:abc", "unix://",
    "/proc/x", "/proc/self/cwd", "/dev/zero", "/etc", "9999-12-31T23:59:59-12:00",
    "0000-01-01", "2026-13-45T99:99:99", "$TMP/data/f", "$TMP/t17", "$TMP/nowhere/x",
    "$TMP/dest", "..", "-", "--", "-h", "%s%n", "{}", "[]", "UTC+99:99",
    # round two
    "$TMP/fifo", "$TMP/deep.json", "1e-320", "-0", "http://h:99999/", "[::1]:99999",
    "+275760-09-13T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+24:00",
    "/dev/fd/0", "$TMP/data/../dest", "a" * 3000,
]  # fmt: skip
COMMANDS = [
    ["validate", "t17"],
    ["diff", "t17", "t17"],
    ["backups", "list", "t17"],
    ["backups", "list", "t17", "--format", "json"],
    ["backups", "prune", "t17", "--dry-run"],
    ["backups", "verify", "t17"],
    ["backup", "t17", "--time"],
    ["restore", "t17", "$TMP/data", "--into"],
    ["plan", "t17", "--out"],
    ["status", "t17"],
    ["schema"],
    ["restore", "t17", "$TMP/data", "--identity"],
    ["backups", "list", "t17", "--identity"],
    ["apply", "$TMP/deep.json"],
    ["status", "--fleet"],
]
OPTIONS = [
    "--lock-timeout", "--engine-timeout", "--state-dir", "--docker-host", "--project",
    "--policy", "--format", "--backup", "--into", "--out", "--time", "--metrics-addr",
    "--identity", "--host", "--notify",
]  # fmt: skip


@st.composite
def argvs(draw: st.DrawFn) -> list[str]:
    command = list(draw(st.sampled_from(COMMANDS)))
    value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12))
    if command[-1].startswith("--"):
        command.append(draw(value))
    extra = draw(st.lists(st.tuples(st.sampled_from(OPTIONS), value), max_size=3))
    head = [x for option, v in extra for x in (option, v)]
    return head + command if draw(st.booleans()) else command + head


BUDGETS = {"cli": _Budget(), "manifest": _Budget(), "archive": _Budget()}


@seed(17)
@PROPERTY
@given(argv=argvs())
def test_no_argument_ends_in_a_traceback(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if BUDGETS["cli"].spent():
        return
    args = [a.replace("$TMP", str(home)) for a in argv]
    run_cli(args, home, capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["--lock-timeout", "nan", "validate", "t17"],
        ["--lock-timeout", "inf", "validate", "t17"],
        ["run", "t17", "--metrics-addr", "localhost:abc"],
        ["--docker-host", "http://[::1", "plan", "t17"],
        ["--docker-host", "tcp://localhost:abc", "plan", "t17"],
        ["--state-dir", "$TMP/data/f", "backup", "t17"],
        ["plan", "t17", "--out", "/proc/x"],
        ["backup", "t17", "--time", "9999-12-31T23:59:59-12:00"],
        ["restore", "t17", "$TMP/data", "--into", "$TMP/data/f"],
        ["validate", "/proc/self/fd/0"],
        ["validate", "/dev/zero"],
        # round two
        ["restore", "t17", "$TMP/data", "--identity", "$TMP/fifo"],
        ["backups", "prune", "t17", "--identity", "$TMP/fifo"],
        ["backups", "list", "t17", "--identity", "/dev/zero"],
        ["apply", "$TMP/deep.json"],
        ["validate", "$TMP/fifo"],
        ["--policy", "$TMP/fifo", "validate", "t17"],
        ["status", "--fleet", "$TMP/fifo"],
    ],
)
def test_the_cases_seen_end_in_a_message(
    argv: list[str], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run_cli([a.replace("$TMP", str(home)) for a in argv], home, capsys)
    assert code == 1 and text.strip(), text


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("version: 1\nvolumes:\n  vv: {labels: {a: " + "9" * 5000 + "}}\n", ""),
        ("version: 1\nx: &r [1, *r]\n", ""),
        ("version: 1\nx: " + "[" * 2000 + "]" * 2000 + "\n", ""),
        (
            "version: 1\ncontainers:\n"
            + "".join(
                f"  c{i}: {{image: busybox, volumes_from: [c{i + 1}]}}\n" for i in range(1500)
            )
            + "  c1500: {image: busybox}\n",
            "",
        ),
        ("version: 1\nvolumes:\n  data_dsr_new: {}\n", "reserves"),
        ('version: 1\ncontainers:\n  c:\n    image: busybox\n    env: {"\u061ck": v}\n', ""),
    ],
)
def test_hostile_specs_end_in_a_message(
    spec: str, words: str, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (home / "t17" / "spec.yaml").write_text(spec)
    _, text = run_cli(["validate", "t17"], home, capsys)
    assert words in text
    assert "\u061c" not in text and "\x1b" not in text


def _manifest_json() -> dict[str, Any]:
    return Manifest(
        id="v-20261101T030000Z",
        policy="nightly",
        project="p",
        source="volume:v",
        time="2026-11-01T03:00:00+00:00",  # type: ignore[arg-type]
        zone="UTC",
        dsr_version="1.0",
        spec_hash="",
        size=1,
        files=1,
        archive_size=1,
        sha256="0" * 64,
        tree_digest="0" * 64,
        read_via="direct",
    ).to_json()


_JSON = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30),
        st.sampled_from(HOSTILE),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)  # fmt: skip


@seed(17)
@PROPERTY
@given(
    field=st.sampled_from(sorted(_manifest_json())),
    value=_JSON,
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
)
def test_the_manifest_reader_answers_every_input(
    field: str, value: Any, raw: bytes, use_raw: bool
) -> None:
    if BUDGETS["manifest"].spent():
        return
    data = raw if use_raw else json.dumps({**_manifest_json(), field: value}).encode()
    start = time.perf_counter()
    try:
        manifest = parse_manifest(data)
    except ManifestError as err:
        assert "\n" not in str(err)
    else:
        manifest.zoned_time()
        json.dumps(manifest.to_json())
    assert time.perf_counter() - start < HANG


def _valid_archive() -> bytes:
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        root = tarfile.TarInfo(".")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        for name, data in (("a", b"hello"), ("dir/b" + "x" * 120, b"y" * 3000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = {"comment": "z" * 40}
            tar.addfile(info, io.BytesIO(data))
    return plain.getvalue()


PLAIN = _valid_archive()


@seed(17)
@PROPERTY
@given(
    edits=st.lists(st.tuples(st.integers(0, len(PLAIN) - 1), st.binary(max_size=8)), max_size=6),
    cut=st.integers(0, len(PLAIN)),
    compress=st.booleans(),
)
def test_the_archive_reader_answers_every_input(
    edits: list[tuple[int, bytes]], cut: int, compress: bool, tmp_path: Path
) -> None:
    if BUDGETS["archive"].spent():
        return
    data = bytearray(PLAIN)
    for at, chunk in edits:
        data[at : at + len(chunk)] = chunk
    blob = bytes(data[:cut]) if cut else bytes(data)
    path = tmp_path / "a.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(blob) if compress else blob)
    with watched(tmp_path), contextlib.suppress(BackupError, OSError):
        scan(str(path), most=(10_000, 10))
