"""A backup rule's destination: a folder, s3://BUCKET/PREFIX, or a list of those."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec import Desired, load_spec
from reconciler.spec.backups import s3_parts

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def load(tmp_path: Path, rule: str) -> Desired:
    text = "version: 1\nvolumes:\n  data: {}\nbackups:\n  nightly:\n    volumes: [data]\n"
    text += textwrap.indent(textwrap.dedent(rule).strip("\n"), "    ") + "\n"
    path = tmp_path / "web" / "spec.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return load_spec(str(path), env={})


def error(tmp_path: Path, rule: str) -> str:
    with pytest.raises(SpecError) as raised:
        load(tmp_path, rule)
    return str(raised.value)


def test_a_folder_an_s3_url_and_a_list(tmp_path: Path) -> None:
    rule = load(tmp_path, "destination: ./b").backups["nightly"]
    assert rule.destinations == [str(tmp_path / "web" / "b")] == rule.folders
    rule = load(
        tmp_path,
        f"""
        destination: [./b, s3://my-bucket/dsr/x]
        endpoint: http://127.0.0.1:8333
        region: us-east-1
        encrypt_to: [{RECIPIENT}]
        """,
    ).backups["nightly"]
    assert rule.destinations == [str(tmp_path / "web" / "b"), "s3://my-bucket/dsr/x"]
    assert rule.folders == [str(tmp_path / "web" / "b")]
    assert rule.encrypt_to == [RECIPIENT]
    assert s3_parts("s3://my-bucket/dsr/x/") == ("my-bucket", "dsr/x")
    assert s3_parts("s3://my-bucket") == ("my-bucket", "")


@pytest.mark.parametrize(
    ("rule", "where", "says"),
    [
        ("destination: gs://bucket/x", "7: backups.nightly.destination", "unknown scheme 'gs:'"),
        ("destination: [./a, ftp://h/x]", "7: backups.nightly.destination", "unknown scheme"),
        ("destination: s3:/bucket", "7: backups.nightly.destination", "not s3://BUCKET/PREFIX"),
        ("destination: s3://B_ad/x", "7: backups.nightly.destination", "not s3://BUCKET"),
        ("destination: s3://bucket/a/../b", "7: backups.nightly.destination", "'..'"),
        ("destination: [./a, ./a]", "7: backups.nightly.destination", "listed twice"),
        ("destination: []", "7: backups.nightly.destination", "empty list"),
        ("destination: ./a\nendpoint: http://h:1", "5: backups.nightly", "need an s3://"),
        ("destination: s3://bucket\nendpoint: ftp://h", "8: backups.nightly.endpoint", "http"),
        ("encrypt_to: [age1xyz]", "7: backups.nightly.encrypt_to", "not an age recipient"),
        (
            "encrypt_to: [age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq]",
            "7: backups.nightly.encrypt_to",
            "not a valid age recipient",
        ),
        ("encrypt_to: [ssh-ed25519 AAAA]", "7: backups.nightly.encrypt_to", "age recipient"),
    ],
)
def test_bad_destinations_name_file_line_and_field(
    tmp_path: Path, rule: str, where: str, says: str
) -> None:
    text = error(tmp_path, rule)
    assert f"spec.yaml:{where}" in text
    assert says in text
