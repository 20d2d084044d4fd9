"""The backup code of issue 20 attacked as a hostile outsider would: each test is one
finding (it failed on the code before its fix) and checks the fix.

- A CI secret taken into a destination or an endpoint through ``${VAR}`` is hidden in
  errors, JSON and logs also when an S3 error quotes it percent-encoded in a URL (an AWS
  secret key holds ``/``, ``+`` and ``=``).
- An endpoint with credentials in it (``http://KEY:SECRET@host``) is refused without
  printing them.
- One store listed twice under two spellings (``s3://b/p`` and ``s3://b/p/``; a folder
  and a link to it) is written once, not by two sinks of one snapshot at once.
"""

from __future__ import annotations

import functools
import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main
from reconciler.errors import SpecError
from reconciler.spec import load_spec

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY"


@pytest.fixture(autouse=True)
def _logs_to_stderr_after() -> Iterator[None]:
    """``main`` points the logs at the stderr of its test (capsys's, closed after it): the
    configuration before the test comes back after it."""
    import structlog

    from reconciler import logs

    saved, wanted, pending = structlog.get_config(), dict(logs._wanted), logs._pending
    yield
    structlog.configure(**saved)
    logs._wanted.clear()
    logs._wanted.update(wanted)
    logs._pending = pending


def _spec(folder: Path, rule: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "version: 1\nproject: atk\nbackups:\n  r:\n"
    text += textwrap.indent(textwrap.dedent(rule).strip("\n"), "    ") + "\n"
    (folder / "spec.yaml").write_text(text)
    return folder


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(args)
    out, err = capsys.readouterr()
    return int(done.value.code or 0), out, err


def test_a_secret_in_a_url_is_hidden_also_percent_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.spec.redact import forget

    forget()
    monkeypatch.setenv("CI_SECRET", SECRET)
    monkeypatch.setenv("DSR_S3_ATTEMPTS", "1")
    monkeypatch.setenv("DSR_S3_TIMEOUT", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    site = tmp_path / "site"
    site.mkdir()
    (site / "f").write_text("data")
    spec = _spec(
        tmp_path / "spec",
        f"""
        paths: [{site}]
        destination:
          - s3://bkt/${{CI_SECRET}}
          - {tmp_path / "d"}
        endpoint: http://127.0.0.1:1/${{CI_SECRET}}
        """,
    )
    state = ["--state-dir", str(tmp_path / "state"), "--log-format", "json"]
    try:
        code, out, err = _run([*state, "backup", str(spec), "--format", "json"], capsys)
    finally:
        forget()
    assert code == 1  # the store cannot be reached: the folder has the snapshot
    [taken] = json.loads(out)["backups"]
    assert [m["destination"] for m in taken["missed"]] == ["s3://bkt/${CI_SECRET}"]
    assert "127.0.0.1:1" in taken["missed"][0]["error"]  # the URL is quoted ...
    for text in (out, err):  # ... but never the secret, in any form
        for part in ("wJalrXUtnFEMI", "K7MDENG", "EXAMPLEKEY"):
            assert part not in text, text


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://AKIAEXAMPLE:hunter2-pass@127.0.0.1:9000",
        "https://hunter2-pass@s3.example.com",
        "http://AKIAEXAMPLE:hun/ter2@pass@127.0.0.1:9000/x",
    ],
)
def test_credentials_in_an_endpoint_are_refused_unprinted(
    tmp_path: Path, endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = _spec(
        tmp_path / "spec",
        f"""
        paths: [{tmp_path}]
        destination: s3://bkt/p
        endpoint: "{endpoint}"
        """,
    )
    with pytest.raises(SpecError) as raised:
        load_spec(str(spec), env={})
    text = str(raised.value)
    assert "spec.yaml:7: backups.r.endpoint" in text and "user name or password" in text
    assert "hunter2" not in text and "AKIAEXAMPLE" not in text, text
    code, out, _ = _run(["plan", str(spec), "--format", "json"], capsys)
    assert code == 1 and "hunter2" not in out and "endpoint" in json.loads(out)["error"]["path"]


@pytest.mark.parametrize(
    "destinations",
    [
        "[s3://bkt/p, s3://bkt/p/]",
        "[s3://bkt/p, s3://bkt//p]",
        "[s3://bkt, s3://bkt/]",
        "[./x, x/../x]",
        "[./x, ./x/]",
    ],
)
def test_one_store_spelled_twice_is_an_error(tmp_path: Path, destinations: str) -> None:
    spec = _spec(
        tmp_path / "spec",
        f"""
        paths: [{tmp_path}]
        destination: {destinations}
        """,
    )
    with pytest.raises(SpecError) as raised:
        load_spec(str(spec), env={})
    assert "spec.yaml:6: backups.r.destination: the same destination is listed twice" in str(
        raised.value
    )


def test_a_folder_and_a_link_to_it_are_one_place_written_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "f").write_text("data")
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "alias")
    spec = _spec(
        tmp_path / "spec",
        f"""
        paths: [{site}]
        destination: [{tmp_path / "alias"}, {real}]
        """,
    )
    state = ["--state-dir", str(tmp_path / "state")]
    code, out, err = _run([*state, "backup", str(spec), "--format", "json"], capsys)
    assert code == 0, err  # before: "exists already", exit 1, the place "missed"
    [taken] = json.loads(out)["backups"]
    assert taken["missed"] == [] and "error" not in taken
    code, out, _ = _run([*state, "backups", "list", str(spec), "--format", "json"], capsys)
    assert [b["id"] for b in json.loads(out)["backups"]] == [taken["id"]]
    assert len(list((real / "atk").iterdir())) == 1


# -- a folder destination swapped for a link between the policy's check and the write -------


def _guarded(dest: Path, roots: list[Path], state: Path) -> Any:
    from reconciler.backup.sealed import SealedFolder
    from reconciler.spec.policy import Policy

    policy = Policy(bind_roots=tuple(str(r) for r in roots), state_dir=str(state))
    place = SealedFolder(str(dest))
    place.guard = functools.partial(policy.check, role="destination")
    return place


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    for n in range(3):
        (site / f"f{n}").write_bytes(os.urandom(300_000))
    return site


def test_a_destination_that_became_a_link_out_of_the_policy_gets_nothing(
    tmp_path: Path,
) -> None:
    from reconciler.backup import places, run
    from reconciler.backup.errors import PlacesFailed
    from reconciler.backup.store import Source

    site, allowed, outside = _site(tmp_path), tmp_path / "allowed", tmp_path / "outside"
    outside.mkdir()
    (allowed / "a").mkdir(parents=True)
    (allowed / "b").mkdir()
    first = _guarded(allowed / "a", [allowed], tmp_path / "state")
    second = _guarded(allowed / "b", [allowed], tmp_path / "state")
    # checked when the backup started (ops.backup); swapped before the write
    (allowed / "b").rmdir()
    (allowed / "b").symlink_to(outside)
    take = places.take(None, "atk", [first, second], str(tmp_path / "staging"))
    with pytest.raises(PlacesFailed) as raised:
        take(Source("path", str(site)), run.Options(policy="r"))
    assert raised.value.stored == [first.url]
    assert "outside the allowed roots" in raised.value.missed[second.url]
    assert list(outside.rglob("*")) == []  # before: outside/atk/ID/archive.tar.zst
    [snapshot] = first.find("atk").snapshots
    assert snapshot.status == "complete"


@pytest.mark.parametrize("swapped", ["destination", "project"])
def test_a_destination_swapped_for_a_link_mid_backup_keeps_the_writes_in_place(
    tmp_path: Path, swapped: str
) -> None:
    from reconciler.backup import places, run
    from reconciler.backup.store import Source

    site, allowed, outside = _site(tmp_path), tmp_path / "allowed", tmp_path / "outside"
    (allowed / "a").mkdir(parents=True)
    (allowed / "b").mkdir()
    first = _guarded(allowed / "a", [allowed], tmp_path / "state")
    second = _guarded(allowed / "b", [allowed], tmp_path / "state")
    victim = allowed / "b" if swapped == "destination" else allowed / "b" / "atk"
    moved = tmp_path / "moved"
    done: list[int] = []

    def swap(_: int) -> None:  # the archive is on its way into both folders now
        if done:
            return
        done.append(1)
        [made] = list((allowed / "b" / "atk").iterdir())
        (outside / made.relative_to(victim)).mkdir(parents=True)  # a trap of the same name
        victim.rename(moved)
        victim.symlink_to(outside)

    take = places.take(None, "atk", [first, second], str(tmp_path / "staging"))
    manifest = take(Source("path", str(site)), run.Options(policy="r", progress=swap))
    assert done
    assert [p for p in outside.rglob("*") if not p.is_dir()] == []  # nothing written there
    kept = moved / "atk" if swapped == "destination" else moved
    assert sorted(p.name for p in (kept / manifest.id).iterdir()) == [
        "archive.tar.zst",
        "manifest.json",
    ]


@pytest.mark.parametrize("field", ["size", "files"])
def test_a_manifest_that_claims_more_than_its_archive_fails_verify(
    tmp_path: Path, field: str
) -> None:
    from reconciler.backup.errors import ChecksumError
    from reconciler.backup.restore import check
    from reconciler.backup.run import backup_path
    from reconciler.backup.store import load, write_manifest

    site = _site(tmp_path)
    manifest = backup_path(None, "atk", str(site), str(tmp_path / "dest"))
    folder = tmp_path / "dest" / "atk" / manifest.id
    snapshot = load(str(folder), "atk")
    assert snapshot is not None
    check(snapshot)  # as written, it verifies
    # edited (no signature: a fresh host has no key to check one): sha256 and tree digest
    # still match, but the size that bounds a restore's writes now says 10^18 bytes
    write_manifest(str(folder), manifest.model_copy(update={field: 10**15}))
    snapshot = load(str(folder), "atk")
    assert snapshot is not None
    with pytest.raises(ChecksumError, match="its manifest says"):
        check(snapshot)


@pytest.mark.parametrize("when", ["before", "mid-backup"])
def test_a_single_folder_destination_swapped_for_a_link_gets_nothing_outside(
    tmp_path: Path, when: str
) -> None:
    from reconciler.backup import places, run
    from reconciler.backup.errors import BackupError
    from reconciler.backup.store import Source

    site, allowed, outside = _site(tmp_path), tmp_path / "allowed", tmp_path / "outside"
    (allowed / "b").mkdir(parents=True)
    place = _guarded(allowed / "b", [allowed], tmp_path / "state")
    moved = tmp_path / "moved"
    done: list[int] = []

    def swap(_: int) -> None:
        if done:
            return
        done.append(1)
        for made in (allowed / "b" / "atk").iterdir():  # a trap of the same name
            (outside / "atk" / made.name).mkdir(parents=True)
        (allowed / "b").rename(moved)
        (allowed / "b").symlink_to(outside)

    take = places.take(None, "atk", [place], str(tmp_path / "staging"))
    if when == "before":
        outside.mkdir()
        (allowed / "b").rmdir()
        (allowed / "b").symlink_to(outside)
        with pytest.raises(BackupError, match="outside the allowed roots"):
            take(Source("path", str(site)), run.Options(policy="r"))
        assert list(outside.rglob("*")) == []
        return
    manifest = take(Source("path", str(site)), run.Options(policy="r", progress=swap))
    assert done
    assert [p for p in outside.rglob("*") if not p.is_dir()] == []
    assert sorted(p.name for p in (moved / "atk" / manifest.id).iterdir()) == [
        "archive.tar.zst",
        "manifest.json",
    ]
