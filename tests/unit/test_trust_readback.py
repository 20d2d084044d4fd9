"""Issue 17, class 2: every file dsr wrote and reads back is input. Each case makes real
snapshots of a host folder through the CLI (``dsr backup``, no engine needed), tampers
with one of them as someone who can write the backup folder would, and runs a command:
no traceback, no hang (each under 2 s), the bad snapshot shown damaged by its id, the
good one still listed, and nothing written outside the test's folders."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.backup.manifest import ManifestError, parse_manifest
from reconciler.cli import main

Tamper = Callable[[Path, Path], None]  # (the bad snapshot's folder, the test's root)


@dataclass(frozen=True)
class Case:
    tamper: Tamper
    problem: str  # a piece of the bad snapshot's problem in `backups list --format json`


def _manifest(folder: Path) -> dict[str, object]:
    return json.loads((folder / "manifest.json").read_text())  # type: ignore[no-any-return]


def edit(**fields: object) -> Tamper:
    def change(folder: Path, root: Path) -> None:
        data = {**_manifest(folder), **fields}
        (folder / "manifest.json").write_text(json.dumps(data))

    return change


def fifo(name: str) -> Tamper:
    def change(folder: Path, root: Path) -> None:
        os.unlink(folder / name) if (folder / name).exists() else None
        os.mkfifo(folder / name)

    return change


def link(name: str, to: str) -> Tamper:
    def change(folder: Path, root: Path) -> None:
        target = root / "outside" / name
        target.parent.mkdir(exist_ok=True)
        (folder / name).rename(target) if (folder / name).exists() else target.write_text("{}")
        (folder / name).symlink_to(target if to == "copy" else to)

    return change


def write(name: str, text: str) -> Tamper:
    def change(folder: Path, root: Path) -> None:
        (folder / name).write_text(text)

    return change


CASES = {
    "manifest-fifo": Case(fifo("manifest.json"), "not a regular file but a FIFO"),
    "manifest-symlink": Case(link("manifest.json", "copy"), "symlink"),
    "manifest-devzero": Case(link("manifest.json", "/dev/zero"), "symlink"),
    "manifest-huge": Case(write("manifest.json", " " * (2 << 20)), "larger than"),
    "manifest-not-json": Case(write("manifest.json", "{"), "unreadable"),
    "zone-out-of-range": Case(edit(zone="UTC+99:99"), "not a time zone"),
    "zone-path": Case(edit(zone="../../etc/passwd"), "zone"),
    "time-far": Case(edit(time="9999-12-31T23:59:59-12:00"), "between the years"),
    "policy-escape": Case(edit(policy="\x1b[2J\x1b]0;pwned\x07"), "policy"),
    "source-bidi": Case(edit(source="path:/srv/\u202eevil"), "control characters"),
    "seconds-nan": Case(edit(seconds=float("nan")), "seconds"),
    "long-skipped-list": Case(edit(skipped=["x"] * 20_000), "skipped"),
    "extra-field": Case(edit(hook="rm -rf /"), "hook"),
    "volume-options": Case(
        edit(volume={"driver": "local", "options": {"type": "none", "o": "bind", "device": "/"}}),
        "not signed here",
    ),
    "edited-size": Case(edit(size=1), "was edited after the backup"),
    "signature-removed": Case(edit(signature=""), "carries no keyed digest"),
    "archive-fifo": Case(fifo("archive.tar.zst"), "not a regular file"),
    "archive-symlink": Case(link("archive.tar.zst", "copy"), "not a regular file"),
    "verify-fifo": Case(fifo("verify.json"), "not a regular file but a FIFO"),
    "verify-garbage": Case(write("verify.json", "[1, 2]"), "not one dsr wrote"),
    "verify-escape": Case(
        write("verify.json", json.dumps({"ok": False, "error": "\x1b[31mred\u061c"})),
        "\\x1b[31mred\\u061c",
    ),
}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    start = time.perf_counter()
    with pytest.raises(SystemExit) as done:
        main(args)
    assert time.perf_counter() - start < 2.0, args
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return int(done.value.code or 0), out, err


@pytest.fixture
def two_snapshots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, Path]:
    """(spec folder, the first snapshot's folder, the second's)."""
    monkeypatch.setenv("DSR_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("hello")
    spec = tmp_path / "t17"
    spec.mkdir()
    (spec / "spec.yaml").write_text(
        f"version: 1\nbackups:\n  nightly:\n    paths: [{tmp_path}/data]\n"
        f"    destination: {tmp_path}/dest\n    keep: {{last: 5}}\n"
    )
    for moment in ("2026-11-01T03:00:00Z", "2026-11-02T03:00:00Z"):
        assert _run(["backup", str(spec), "--time", moment], capsys)[0] == 0
    folders = sorted((tmp_path / "dest" / "t17").glob("*"))
    assert len(folders) == 2
    return spec, folders[0], folders[1]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if "state" not in p.parts}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_tampered_snapshot_is_damaged_and_hides_nothing(
    name: str,
    two_snapshots: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, bad, good = two_snapshots
    CASES[name].tamper(bad, tmp_path)
    before = _tree(tmp_path)
    code, out, _ = _run(["backups", "list", str(spec), "--format", "json"], capsys)
    assert code == 0
    rows = {row["id"]: row for row in json.loads(out)["backups"]}
    assert rows[good.name]["status"] == "complete"
    assert rows[bad.name]["status"] == "damaged", rows
    assert CASES[name].problem in rows[bad.name]["problem"], rows[bad.name]
    code, text, _ = _run(["backups", "list", str(spec)], capsys)
    assert code == 0 and "\x1b" not in text and "\u202e" not in text and "\u061c" not in text
    # a restore of the bad one is refused by its id; prune and verify never hang
    target = tmp_path / "restored"
    code, _, err = _run(
        ["restore", str(spec), str(tmp_path / "data"), "--backup", bad.name,
         "--into", str(target)],
        capsys,
    )  # fmt: skip
    assert code == 1 and not target.exists(), err
    _run(["backups", "prune", str(spec), "--dry-run"], capsys)
    _run(["backups", "verify", str(spec)], capsys)
    written = {str((p / "verify.json").relative_to(tmp_path)) for p in (bad, good)}
    assert _tree(tmp_path) - before <= written  # verify's results, nothing else


def test_prune_never_follows_a_link_at_destination_project(
    two_snapshots: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _, _ = two_snapshots
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / "dest" / "t17").rename(elsewhere)
    (tmp_path / "dest" / "t17").symlink_to(elsewhere)
    (spec / "spec.yaml").write_text((spec / "spec.yaml").read_text().replace("last: 5", "last: 1"))
    code, out, _ = _run(["backups", "prune", str(spec)], capsys)
    assert code == 0
    assert len(list(elsewhere.glob("*"))) == 2  # nothing removed through the link
    code, out, _ = _run(["backups", "list", str(spec), "--format", "json"], capsys)
    assert json.loads(out)["backups"] == []


@pytest.mark.parametrize(
    ("into", "why"),
    [
        ("$TMP/dest", "backup destination"),
        ("$TMP/dest/t17/x", "backup destination"),
        ("$TMP", "contains the protected dsr state directory"),
        ("$TMP/state", "state directory"),
        ("$TMP/state/backups/z", "protected dsr state directory"),
        ("$TMP/file", "not a directory"),
        ("/proc/self/cwd", "passes through /proc/self"),
        ("/etc/dsr-restore", "protected /etc"),
        # links and ``..`` (round two): each resolves into a protected place
        ("$TMP/to-dest/t17", "backup destination"),
        ("$TMP/to-dest-project", "backup destination"),
        ("$TMP/to-state/new", "state directory"),
        ("$TMP/data/../dest/t17/y", "backup destination"),
        ("$TMP/to-data/../state", "state directory"),
        ("$TMP/to-tmp", "state directory"),
        ("$TMP/to-etc/dsr-x", "protected /etc"),
        ("/proc/1/root/tmp/x", "passes through /proc/1"),
        ("/dev/fd/0", "/dev"),
    ],
)
def test_a_restore_target_is_never_a_destination_the_state_dir_or_protected(
    into: str,
    why: str,
    two_snapshots: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    spec, _, _ = two_snapshots
    (tmp_path / "file").write_text("keep")
    for link, to in [
        ("to-dest", "dest"),
        ("to-dest-project", "dest/t17"),
        ("to-state", "state"),
        ("to-data", "data"),
        ("to-tmp", "."),
    ]:
        (tmp_path / link).symlink_to(tmp_path / to)
    (tmp_path / "to-etc").symlink_to("/etc")
    before = _tree(tmp_path)
    target = into.replace("$TMP", str(tmp_path))
    code, _, err = _run(["restore", str(spec), str(tmp_path / "data"), "--into", target], capsys)
    assert code == 1 and why in err, err
    assert _tree(tmp_path) == before
    assert len(list((tmp_path / "dest" / "t17").glob("*"))) == 2


def test_a_refused_restore_removes_the_target_it_made(
    two_snapshots: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _, good = two_snapshots
    archive = good / "archive.tar.zst"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 1  # same size: only reading it finds out
    archive.write_bytes(bytes(data))
    target = tmp_path / "new" / "deeper"
    code, _, err = _run(["restore", str(spec), str(tmp_path / "data"), "--into", str(target)],
                        capsys)  # fmt: skip
    assert code == 1 and "checksum" in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"null",
        b"[]",
        b'{"format_version": 2}',
        b"{" * 100_000,
        b'{"id": "' + b"a" * 300 + b'"}',
        b'{"time": "2026-01-01T00:00:00"}',
        b"\xff\xfe",
        b'{"size": ' + b"9" * 5000 + b"}",
    ],
)
def test_parse_manifest_refuses_with_one_line(text: bytes) -> None:
    start = time.perf_counter()
    with pytest.raises(ManifestError) as refused:
        parse_manifest(text)
    assert time.perf_counter() - start < 2.0
    assert "\n" not in str(refused.value)


def test_another_state_dir_restores_only_when_told_to_trust_unsigned_snapshots(
    two_snapshots: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new host (its state directory, and so its backup-key, lost with the old one)."""
    spec, _, _ = two_snapshots
    monkeypatch.setenv("DSR_STATE_DIR", str(tmp_path / "new-state"))
    target = tmp_path / "restored"
    args = ["restore", str(spec), str(tmp_path / "data"), "--into", str(target)]
    code, _, err = _run(args, capsys)
    assert code == 1 and "no complete backup" in err and not target.exists()
    code, _, err = _run([*args, "--trust-unsigned"], capsys)
    assert code == 0, err
    assert (target / "f").read_text() == "hello"


def test_a_target_swapped_for_a_link_after_its_check_is_not_written(
    two_snapshots: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race of a shared /tmp: the target did not exist when it was checked, and someone
    made it a link to a protected folder before dsr created it."""
    from reconciler.backup import ops

    spec, _, _ = two_snapshots
    protected = tmp_path / "state" / "elsewhere"
    protected.mkdir(parents=True)
    target = tmp_path / "shared" / "target"
    made = ops._make_target

    def racing(folder: str) -> str | None:
        target.parent.mkdir(exist_ok=True)
        target.symlink_to(protected)  # the attacker wins the race
        return made(folder)

    monkeypatch.setattr(ops, "_make_target", racing)
    code, _, err = _run(
        ["restore", str(spec), str(tmp_path / "data"), "--into", str(target)], capsys
    )
    assert code == 1 and "changed while the restore checked it" in err, err
    assert list(protected.iterdir()) == []
