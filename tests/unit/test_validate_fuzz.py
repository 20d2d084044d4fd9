"""Property tests: whatever the input, ``load_spec`` returns a state or raises ``SpecError``.

Never another exception, never an issue without a file and a line, and never a change on the
host. Inputs: raw text and bytes, YAML documents built from random nested values, and random
mutations of realistic spec sets (the seed examples in ``specs/examples/seed/`` when they
exist, else the base specs below).
"""

from __future__ import annotations

import os
import shutil
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import SpecError
from reconciler.spec import load_spec

SEED = Path(__file__).resolve().parents[2] / "specs" / "examples" / "seed"
# DSR_FUZZ_EXAMPLES=5000 for a longer hunt; the default keeps the unit suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("DSR_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Used when the seed examples are not there (yet): the same shapes, written here.
BASE_SPECS = {
    "storage.yaml": """\
version: 1
project: fuzz
x-labels: &labels {team: web}
volumes:
  registry-data:
    reclaim: backup-then-delete
    labels: *labels
  certs: {external: true}
images:
  htdocs:
    context: ./htdocs
    path: /usr/local/apache2/htdocs
backups:
  nightly:
    volumes: [registry-data]
    paths: [./htdocs]
    schedule: "0 3 * * *"
    keep: {last: 3, daily: 7, weekly: 4, monthly: 6, within: 2d}
""",
    "web.yaml": """\
version: 1
project: fuzz
volume_containers:
  vc_data:
    image: htdocs
    mounts:
      - ./htdocs:/usr/local/apache2/htdocs:ro
      - /var/cache/app
      - type: volume
        source: registry-data
        target: /opt/tools
containers:
  web1:
    image: ${HTTPD_IMAGE:-httpd:2.4}
    command: [httpd-foreground]
    env: {LANG: C}
    ports: ["8080:80"]
    restart: unless-stopped
    volumes_from: [vc_data, "vc_data2:ro"]
    mounts:
      - type: bind
        source: ./htdocs
        target: /srv/htdocs
        read_only: true
      - type: tmpfs
        target: /tmp/cache
  vc_data2:
    image: busybox
    state: created
    mounts: [certs:/etc/ssl/certs:ro]
""",
}

# Keys and values of the spec format, so that random documents reach past the top level.
SPEC_WORDS = [
    "version",
    "project",
    "volumes",
    "images",
    "volume_containers",
    "containers",
    "backups",
    "driver",
    "external",
    "reclaim",
    "on_change",
    "image",
    "mounts",
    "type",
    "source",
    "target",
    "create",
    "read_only",
    "volumes_from",
    "keep",
    "last",
    "within",
    "paths",
    "schedule",
    "context",
    "path",
    "labels",
    "env",
    "command",
    "ports",
    "data",
    "web1",
    "bind",
    "volume",
    "tmpfs",
    "/srv",
    "./x",
    "~",
    "/etc",
    "x-ext",
    "<<",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(SPEC_WORDS),
    st.text(max_size=20),
    st.sampled_from(["${X}", "${X:-d}", "$$", "${", "a:b:c", ":/x", "1d", "0 3 * * *"]),
)
keys = st.one_of(st.sampled_from(SPEC_WORDS), st.text(max_size=12))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
documents = st.one_of(
    values,
    st.dictionaries(keys, values, max_size=6).map(lambda d: {"version": 1, **d}),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    return {str(p): (p.is_dir(), p.lstat().st_size) for p in sorted(root.rglob("*"))}


def check(path: Path) -> None:
    """Load ``path``: a ``Desired`` or a ``SpecError`` whose every issue is well formed."""
    try:
        load_spec(str(path), env={})
    except SpecError as err:
        assert err.issues
        for issue in err.issues:
            assert issue.line >= 1
            assert issue.file.startswith(str(path))
            assert issue.message


# --- (a) anything at all -------------------------------------------------------------------


@FUZZ
@given(text=st.text(max_size=300))
def test_raw_text(scratch: Path, text: str) -> None:
    file = scratch / "text.yaml"
    file.write_text(text, encoding="utf-8")
    check(file)


@FUZZ
@given(data=st.binary(max_size=200))
def test_raw_bytes(scratch: Path, data: bytes) -> None:
    file = scratch / "bytes.yaml"
    file.write_bytes(data)
    check(file)


@FUZZ
@given(text=st.text(alphabet=string.printable + "{}[]:-&*!|>'\"%@`#,?\t", max_size=300))
def test_yaml_like_text(scratch: Path, text: str) -> None:
    file = scratch / "yamlish.yaml"
    file.write_text(text, encoding="utf-8")
    check(file)


@FUZZ
@given(document=documents, flow=st.booleans())
def test_random_yaml_documents(scratch: Path, document: Any, flow: bool) -> None:
    file = scratch / "doc.yaml"
    file.write_text(yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True))
    check(file)


# --- (b) mutations of realistic spec sets ----------------------------------------------


@pytest.fixture(scope="module")
def base_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the seed examples (or of ``BASE_SPECS``) that the mutations edit."""
    root = tmp_path_factory.mktemp("base") / "specs"
    if list(SEED.glob("*.yaml")):
        shutil.copytree(SEED, root, ignore=shutil.ignore_patterns("myregistry"))
    else:
        root.mkdir()
        (root / "htdocs").mkdir()
        (root / "htdocs" / "index.html").write_text("<h1>hello</h1>\n")
        for name, text in BASE_SPECS.items():
            (root / name).write_text(text)
    load_spec(str(root), env={})  # the base itself is valid
    return root


def spec_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


def places(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into the document: mapping keys and list indexes, outermost first."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from places(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from places(value, (*path, index))


def at(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def mutate(document: Any, draw: Any) -> Any:
    """One random edit of the parsed document, in place; returns the document."""
    targets = list(places(document))[1:]
    if not targets:
        return draw(values)
    path = draw(st.sampled_from(targets))
    parent, last = at(document, path[:-1]), path[-1]
    op = draw(st.sampled_from(["delete", "retype", "rename", "insert", "replace"]))
    if op == "delete":
        del parent[last]
    elif op == "retype":
        current = parent[last]
        others = [None, True, 0, -2, 1.5, "text", [], {}, [current], {"k": current}]
        parent[last] = draw(st.sampled_from([o for o in others if type(o) is not type(current)]))
    elif op == "rename" and isinstance(parent, dict):
        parent[draw(keys)] = parent.pop(last)
    elif op == "insert":
        container = parent[last] if isinstance(parent[last], dict | list) else parent
        if isinstance(container, dict):
            container[draw(keys)] = draw(values)
        else:
            container.insert(draw(st.integers(0, len(container))), draw(values))
    else:
        parent[last] = draw(values)
    return document


@FUZZ
@given(data=st.data())
def test_mutated_spec_sets(base_set: Path, data: st.DataObject) -> None:
    file = data.draw(st.sampled_from(spec_files(base_set)))
    original = file.read_text()
    document = yaml.safe_load(original)
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data.draw)
    try:
        file.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
        before = snapshot(base_set)
        check(base_set)
        assert snapshot(base_set) == before, "validating changed the host"
    finally:
        file.write_text(original)


@FUZZ
@given(data=st.data())
def test_truncated_and_spliced_spec_sets(base_set: Path, data: st.DataObject) -> None:
    file = data.draw(st.sampled_from(spec_files(base_set)))
    original = file.read_text()
    cut = data.draw(st.integers(0, len(original)))
    insert = data.draw(st.one_of(st.just(""), st.text(max_size=10), st.sampled_from(SPEC_WORDS)))
    end = data.draw(st.sampled_from([len(original), cut, min(len(original), cut + 5)]))
    try:
        file.write_text(original[:cut] + insert + original[end:])
        check(base_set)
    finally:
        file.write_text(original)
