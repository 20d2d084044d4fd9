"""Several compose files merged as Docker Compose merges them.

The differential tests ask Debian's ``docker-compose config`` (the Python 1.29 that CI
installs; its merge rules are those of the compose specification for everything these
fixtures use) for the merged model of each fixture, import that one file, and compare it
with dsr's import of the files themselves (``extends`` included, from the same file and
from another). What only Compose v2 has (``!reset``,
``!override``, top-level entries merged per key) is checked against the specification's
own examples.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import SpecError
from reconciler.importer.compose import import_compose
from reconciler.importer.compose_read import read_compose
from reconciler.spec.yamlload import unwrap

FIXTURES = Path(__file__).parent / "fixtures" / "compose-merge"
CASES = {
    "envports": ["compose.yml", "override.yml"],
    "mounts": ["compose.yml", "override.yml"],
    "three": ["compose.yml", "staging.yml", "local.yml"],
    "extends": ["compose.yml", "override.yml"],  # common.yml is read through extends
}


def comparable(document: dict[str, Any]) -> dict[str, Any]:
    """What a merge decides; the order of entries compose keeps unique (ports, mounts,
    aliases) is not part of the model (1.x sorts ports by target), and 1.x writes the
    default ``:rw`` of ``volumes_from``."""
    for container in document.get("containers", {}).values():
        if "volumes_from" in container:
            container["volumes_from"] = [v.removesuffix(":rw") for v in container["volumes_from"]]
        if "ports" in container:
            container["ports"] = sorted(container["ports"])
        if "mounts" in container:
            container["mounts"] = sorted(container["mounts"], key=lambda m: m["target"])
        for network in (container.get("networks") or {}).values():
            network["aliases"] = sorted(network["aliases"])
    return document


def imported(files: list[Path]) -> dict[str, Any]:
    result = import_compose(read_compose([str(f) for f in files]), "mergetest", "v1")
    return comparable(result.document())


@pytest.mark.parametrize("case", sorted(CASES))
def test_files_merge_as_docker_compose_config_merges_them(case: str, tmp_path: Path) -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is needed (deploy/setup-docker.sh installs it)"
    folder = tmp_path / case
    shutil.copytree(FIXTURES / case, folder)
    files = [folder / name for name in CASES[case]]
    args = [compose, "-p", "mergetest", *(a for f in files for a in ("-f", str(f)))]
    done = subprocess.run(
        [*args, "config", "--no-interpolate"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    merged = folder / "merged.yml"  # in the project folder: relative paths stay the same
    merged.write_text(done.stdout)
    assert imported(files) == imported([merged])


def write(folder: Path, **files: str) -> list[Path]:
    out = []
    for name, body in files.items():
        path = folder / f"{name}.yml"
        path.write_text(textwrap.dedent(body))
        out.append(path)
    return out


def test_reset_removes_and_override_replaces(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        base="""\
            services:
              app:
                image: myapp
                ports: ["8080:80"]
                environment: {FOO: BAR, KEEP: "1"}
                labels: [a=1]
                volumes: [data:/data, logs:/logs]
            volumes:
              data: {}
              logs: {}
            """,
        over="""\
            services:
              app:
                ports: !reset []
                environment:
                  FOO: !reset null
                labels: !override {b: "2"}
                volumes: !override [logs:/other]
            """,
    )
    app = import_compose(read_compose([str(f) for f in files]), "r").containers["r-app-1"]
    assert "ports" not in app
    assert app["env"] == {"KEEP": "1"}
    assert app["labels"] == {"b": "2"}
    assert app["mounts"] == [{"type": "volume", "target": "/other", "source": "r_logs"}]


def test_compose_v2_rules_beyond_what_1x_shares(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        base="""\
            x-shared: {a: 1}
            services:
              app:
                image: myapp
                command: run
                user: "1"
            volumes:
              data:
                driver_opts: {type: none, o: bind, device: /srv/data}
                labels: [team=a]
            """,
        over="""\
            x-shared: {b: 2}
            services:
              app:
                user: null
                volumes: [data:/data]
            volumes:
              data:
                labels: {owner: b}
            """,
    )
    compose = read_compose([str(f) for f in files])
    assert unwrap(compose.data["x-shared"]) == {"b": 2}  # x- keys are replaced whole
    result = import_compose(compose, "v")
    assert result.containers["v-app-1"]["user"] == "1"  # a later null leaves the value
    assert result.volumes["v_data"] == {
        "adopt": True,
        "driver_opts": {"type": "none", "o": "bind", "device": "/srv/data"},
        "labels": {"team": "a", "owner": "b"},
    }


def test_messages_name_the_file_that_wrote_the_value(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        base="services:\n  app:\n    image: a\n    ports: ['80']\n",
        over="services:\n  app:\n    ports:\n      - '81'\n      - 'x:y'\n",
    )
    result = import_compose(read_compose([str(f) for f in files]), "l")
    notes = [str(n) for n in result.notes]
    assert any(n.startswith(f"{files[1]}:5: services.app.ports[2]:") for n in notes), notes


def test_a_mapping_and_a_list_cannot_merge(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        base="services:\n  app:\n    image: a\n    volumes: [data:/data]\nvolumes: {data: {}}\n",
        over="services:\n  app:\n    volumes: {data: /data}\n",
    )
    with pytest.raises(SpecError) as err:
        read_compose([str(f) for f in files])
    text = str(err.value)
    assert f"{files[1]}:3: services.app.volumes: cannot merge a mapping into a list" in text


def test_extends_shares_no_dependencies_and_names_what_is_wrong(tmp_path: Path) -> None:
    files = write(
        tmp_path,
        compose="""\
            services:
              base:
                image: app
                depends_on: [db]
                volumes_from: [db]
              web:
                extends: {service: base}
              db:
                image: db
            """,
    )
    web = import_compose(read_compose([str(files[0])]), "e").containers["e-web-1"]
    assert web["image"] == "app" and "depends_on" not in web and "volumes_from" not in web
    bad = write(
        tmp_path,
        bad="""\
            services:
              a: {extends: b}
              b: {extends: a}
              c: {extends: nowhere}
              d: {extends: {file: missing.yml, service: x}}
            """,
    )[0]
    with pytest.raises(SpecError) as err:
        read_compose([str(bad)])
    text = str(err.value)
    assert f"{bad}:2: services.a.extends: extends forms a cycle" in text
    assert f"{bad}:4: services.c.extends: service 'nowhere' is not defined" in text
    assert "missing.yml" in text and "cannot read the compose file" in text


def test_extends_is_bounded_like_yaml_aliases(tmp_path: Path) -> None:
    """Many services extending one large service would build millions of values from a
    small file: refused past a bound, as YAML aliases are."""
    big = "services:\n  x:\n    image: y\n    environment:\n" + "".join(
        f"      K{i}: v\n" for i in range(5000)
    )
    (tmp_path / "big.yml").write_text(big)
    fan = "services:\n" + "".join(
        f"  s{i}:\n    extends: {{file: big.yml, service: x}}\n" for i in range(60)
    )
    (tmp_path / "fan.yml").write_text(fan)
    with pytest.raises(SpecError, match="extends copies more than 200000 values in all"):
        read_compose([str(tmp_path / "fan.yml")])
