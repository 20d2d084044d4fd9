"""YAML 1.2 core schema, as compose reads files: text fields keep the text written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.spec import load_spec
from reconciler.spec.yamlload import Plain, load_yaml

WRITTEN = [
    "12:30",
    "NO",
    "no",
    "0755",
    "8080",
    "1e3",
    "on",
    "yes",
    "Off",
    "0x1F",
    "0o17",
    "+12",
    "1_000",
    "2026-11-29",
    ".5",
    "-0",
    "TRUE",
    "1.0",
    ".inf",
    "y",
    "~",
]


@pytest.mark.parametrize("text", WRITTEN)
def test_text_fields_keep_the_written_text(text: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    value = text if text != "~" else "~"
    spec.write_text(
        "version: 1\nproject: p\n"
        "volumes:\n  data:\n"
        f"    driver_opts: {{type: tmpfs, device: {value}}}\n    labels: {{l: {value}}}\n"
        "containers:\n  web:\n    image: busybox\n"
        f"    command: [echo, {value}]\n    env: {{V: {value}}}\n    labels: {{l: {value}}}\n"
    )
    if text == "~":  # null is no text: an error, not the text "None"
        with pytest.raises(SpecError, match="expected text, got nothing"):
            load_spec(str(spec), env={})
        return
    desired = load_spec(str(spec), env={})
    web = desired.containers["web"]
    assert web.env["V"] == text
    assert web.command == ["echo", text]
    assert web.labels["l"] == text
    assert desired.volumes["data"].driver_opts["device"] == text
    assert desired.volumes["data"].labels["l"] == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("False", False),
        ("0755", 755),
        ("0o17", 15),
        ("0x1F", 31),
        ("1e3", 1000.0),
        ("12:30", "12:30"),
        ("yes", "yes"),
        ("NO", "NO"),
        ("2026-11-29", "2026-11-29"),
        ("~", None),
    ],
)
def test_core_schema_values(text: str, value: object) -> None:
    data = load_yaml(f"k: {text}\n", "f.yaml", env={}).data["k"]
    assert (data.value if isinstance(data, Plain) else data) == value


def test_numbers_and_booleans_still_work_where_the_model_wants_them(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nproject: p\nvolumes:\n  data: {external: true}\n"
        "backups:\n  b: {volumes: [data], keep: {last: 3}, quiesce: false}\n"
    )
    desired = load_spec(str(spec), env={})
    assert desired.volumes["data"].external is True
    assert desired.backups["b"].keep.last == 3


def test_yaml_11_booleans_are_not_booleans(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\nproject: p\nvolumes:\n  data: {external: yes}\n")
    with pytest.raises(SpecError, match=r"volumes\.data\.external: expected true or false"):
        load_spec(str(spec), env={})


def test_suggestions_are_linear(tmp_path: Path) -> None:
    volumes = "".join(f"  data-{n:04d}: {{}}\n" for n in range(1000))
    mounts = "".join(f"      - data-{n:04d}x:/m{n}\n" for n in range(1000))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"version: 1\nproject: p\nvolumes:\n{volumes}containers:\n"
        f"  web:\n    image: busybox\n    mounts:\n{mounts}"
    )
    start = time.perf_counter()
    with pytest.raises(SpecError) as raised:
        load_spec(str(spec), env={})
    assert time.perf_counter() - start < 1.0
    assert len(raised.value.issues) == 1000
    assert raised.value.issues[0].message.endswith("did you mean 'data-0000'?")


def test_ports_as_compose_writes_them(tmp_path: Path) -> None:
    # YAML 1.1 read 8080:80 as the sexagesimal number 484880.
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1\nproject: p\ncontainers:\n  web:\n    image: busybox\n"
        "    ports: [8080:80, 80, 127.0.0.1:53:53/udp]\n    user: 1000\n"
    )
    web = load_spec(str(spec), env={}).containers["web"]
    assert web.ports == ["8080:80", "80", "127.0.0.1:53:53/udp"]
    assert web.user == "1000"
