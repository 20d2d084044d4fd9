"""``dsr import compose``: compose files as Compose v2 reads them, into specs dsr accepts,
with every key that cannot be carried over named (on stderr and in the file)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.errors import SpecError
from reconciler.importer.compose import import_compose
from reconciler.importer.compose_read import read_compose
from reconciler.importer.compose_service import CARRIED
from reconciler.importer.write import render
from reconciler.spec import load_policy, load_spec

FIXTURES = Path(__file__).parent / "fixtures" / "compose"
STACKS = sorted(p.name for p in FIXTURES.glob("*.yml"))


def imported_text(path: Path, **options: str) -> tuple[str, list[str]]:
    compose = read_compose([str(path)])
    imported = import_compose(compose, options.get("project"), options.get("naming", "v2"),
                              load_policy(None))  # fmt: skip
    return render(imported), [str(n) for n in imported.notes]


@pytest.mark.parametrize("stack", STACKS)
def test_real_stacks_import_into_valid_specs_naming_what_is_left(
    stack: str, tmp_path: Path
) -> None:
    text, notes = imported_text(FIXTURES / stack)
    spec = tmp_path / "spec" / "imported.yaml"
    spec.parent.mkdir()
    spec.write_text(text)
    env = dict.fromkeys(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text), "x1")
    for name in re.findall(r"source: \$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
        env[name] = str(tmp_path)  # a folder named by a variable (immich's UPLOAD_LOCATION)
    desired = load_spec(str(spec), env=env)  # raises SpecError when dsr would not accept it
    assert desired.containers
    assert all(spec_.adopt for spec_ in desired.containers.values())
    compose = yaml.safe_load((FIXTURES / stack).read_text())
    for name, service in compose["services"].items():
        for key in set(service) - CARRIED - {"extends"}:  # extends is resolved
            assert any(f"services.{name}.{key}:" in n for n in notes), (stack, name, key)
            assert f"services.{name}.{key}:" in text  # as a comment in the file too


def test_names_are_compose_v2s_or_v1s(tmp_path: Path) -> None:
    text, _ = imported_text(FIXTURES / "wordpress.yml", project="blog")
    spec = yaml.safe_load(text)
    assert sorted(spec["containers"]) == ["blog-db-1", "blog-wordpress-1"]
    assert sorted(spec["volumes"]) == ["blog_db_data", "blog_wordpress_data"]
    assert spec["networks"] == {"blog_default": {"adopt": True}}
    db = spec["containers"]["blog-db-1"]
    assert db["networks"] == {"blog_default": {"aliases": ["db"]}}
    assert db["mounts"] == [
        {"type": "volume", "target": "/var/lib/mysql", "source": "blog_db_data"}
    ]
    text, _ = imported_text(FIXTURES / "wordpress.yml", project="blog", naming="v1")
    assert sorted(yaml.safe_load(text)["containers"]) == ["blog_db_1", "blog_wordpress_1"]
    # name: in the file names the project; container_name and a volume's name: win.
    spec = yaml.safe_load(imported_text(FIXTURES / "jellyfin.yml")[0])
    assert spec["project"] == "jellyfin" and list(spec["containers"]) == ["jellyfin"]
    spec = yaml.safe_load(imported_text(FIXTURES / "registry.yml")[0])
    assert list(spec["volumes"]) == ["registry_data"]
    assert spec["volumes"]["registry_data"]["labels"] == {"com.example.backup": "nightly"}


def test_values_keep_their_text_and_vars_stay_as_written() -> None:
    text, _ = imported_text(FIXTURES / "postgres.yml", project="pg")
    spec = yaml.safe_load(text)
    pg = spec["containers"]["pg-postgres-1"]
    assert pg["image"] == "postgres:${POSTGRES_VERSION:-16}-alpine"
    assert pg["env"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"  # :? made plain ${...}
    assert pg["stop_timeout"] == 90 and pg["stop_signal"] == "SIGINT" and pg["init"] is True
    assert {"type": "tmpfs", "target": "/run/postgresql", "tmpfs_size": 16 << 20} in pg["mounts"]
    assert spec["volumes"] == {"shared_pgdata": {"external": True}}
    assert spec["containers"]["pg-adminer-1"]["ports"] == ["8081:8080/tcp"]
    registry = yaml.safe_load(imported_text(FIXTURES / "registry.yml")[0])["containers"]["registry"]
    assert registry["env"]["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"  # text, as written
    assert registry["ports"] == ["127.0.0.1:5000:5000"]


def test_env_files_list_forms_and_dollars(tmp_path: Path) -> None:
    (tmp_path / "app.env").write_text('A=1\n# note\nB="two words"\nC=co$t\nexport D=4 # c\n')
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        textwrap.dedent(
            """
            services:
              app:
                build: .
                command: sh -c 'echo "$$HOME"'
                env_file: app.env
                environment: ["A=override", "LIT=$$x", "FROM_SHELL"]
                labels: [one=1, two]
                volumes: ["./data:/data:z", "/cache"]
              side:
                image: busybox
                volumes_from: ["app:ro"]
            """
        )
    )
    spec = yaml.safe_load(imported_text(compose, project="p")[0])
    app = spec["containers"]["p-app-1"]
    assert app["image"] == "p-app"  # the image compose builds
    assert app["command"] == ["sh", "-c", 'echo "$$HOME"']
    assert app["env"] == {"A": "override", "B": "two words", "C": "co$$t", "D": "4",
                          "LIT": "$$x", "FROM_SHELL": "${FROM_SHELL}"}  # fmt: skip
    assert app["labels"] == {"one": "1", "two": ""}
    assert app["mounts"] == [
        {"type": "bind", "target": "/data", "source": str(tmp_path / "data"), "create": True,
         "selinux": "z"},
        {"type": "volume", "target": "/cache"},
    ]  # fmt: skip
    assert spec["containers"]["p-side-1"]["volumes_from"] == ["p-app-1:ro"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services: [\n", "compose.yaml:2: YAML syntax error"),
        ("version: '3'\n", "compose.yaml:1: services: a compose file needs a services mapping"),
        ("services:\n  a: {}\n", "compose.yaml:2: services.a: a service needs image or build"),
        ("services:\n  a:\n    image: x\n    bogus: 1\n",
         "compose.yaml:4: services.a.bogus: unknown key 'bogus' of a compose service"),
        ("services:\n  a:\n    image: x\n    volumes: [nope:/x]\n",
         "compose.yaml:4: services.a.volumes[0]: volume 'nope' is not defined"),
        ("services:\n  a:\n    image: x\n    networks: [back]\n",
         "compose.yaml:4: services.a.networks.back: network 'back' is not defined"),
        ("services:\n  a:\n    image: x\nwhat: 1\n", "compose.yaml:4: what: unknown top-level key"),
    ],
)  # fmt: skip
def test_an_invalid_compose_file_exits_1_naming_file_line_and_path(
    tmp_path: Path, text: str, expected: str
) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(text)
    with pytest.raises(SpecError) as caught:
        import_compose(read_compose([str(compose)]), "p")
    assert any(
        str(i).replace(str(tmp_path) + "/", "").startswith(expected) for i in caught.value.issues
    )
    result = CliRunner().invoke(cli, ["import", "compose", str(compose)])
    assert result.exit_code == 1


def test_the_cli_writes_the_file_and_lists_notes_on_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["import", "compose", str(FIXTURES / "gitea.yml"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    written = (tmp_path / "compose.yaml").read_text()
    assert "services.server.volumes[1]: not carried over" in written
    assert "services.server.volumes[1]: not carried over" in result.stderr
    assert "/etc/timezone" in result.stderr  # a bind the host-path policy refuses is named


def test_several_files_merge_as_compose_merges_them(tmp_path: Path) -> None:
    base, override = tmp_path / "a.yml", tmp_path / "b.yml"
    base.write_text("services:\n  web:\n    image: nginx:1\n    environment: {A: '1', B: '2'}\n")
    override.write_text("services:\n  web:\n    image: nginx:2\n    environment: {B: '3'}\n")
    imported = import_compose(read_compose([str(base), str(override)]), "m")
    web = imported.containers["m-web-1"]
    assert web["image"] == "nginx:2" and web["env"] == {"A": "1", "B": "3"}


def test_depends_on_cycles_and_completed_conditions(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yml"
    compose.write_text(
        textwrap.dedent("""\
            services:
              migrate:
                image: app
              app:
                image: app
                depends_on:
                  migrate: {condition: service_completed_successfully}
                  db: {condition: service_healthy}
              db:
                image: db
                depends_on: [cache]
              cache:
                image: cache
            """)
    )
    result = import_compose(read_compose([str(compose)]), "c")
    app = result.containers["c-app-1"]
    assert app["depends_on"] == {"c-db-1": {"condition": "service_healthy"}}
    notes = [str(n) for n in result.notes]
    assert any(n.startswith(f"{compose}:7: services.app.depends_on.migrate: not carried over: condition service_completed_successfully") for n in notes), notes  # fmt: skip
    compose.write_text(compose.read_text() + "    depends_on: [app]\n")
    with pytest.raises(SpecError) as err:
        import_compose(read_compose([str(compose)]), "c")
    assert str(err.value).startswith(
        f"{compose}:8: services.app.depends_on.db: depends_on forms a cycle: app -> db -> cache -> app"
    )


def _paths(value: object, loc: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [loc]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, (*loc, index))
    return out


@pytest.mark.parametrize("stack", ["gitea.yml", "immich.yml"])
def test_a_value_of_the_wrong_shape_anywhere_is_an_error_never_a_crash(
    stack: str, tmp_path: Path
) -> None:
    """Every value of a real stack replaced in turn by values of other shapes: the import
    succeeds or raises SpecError (FILE:LINE: path: message), nothing else."""
    base = yaml.safe_load((FIXTURES / stack).read_text())
    for name in ("immich.env", "nextcloud.env", "parts"):
        source = FIXTURES / name
        if source.exists() and not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(source)
    path = tmp_path / stack
    for loc in _paths(base)[1:]:
        for weird in (5, [], {}, "a:b:c:d"):
            doc = yaml.safe_load((FIXTURES / stack).read_text())
            holder = doc
            for part in loc[:-1]:
                holder = holder[part]
            holder[loc[-1]] = weird
            path.write_text(yaml.safe_dump(doc))
            try:
                import_compose(read_compose([str(path)]), "fz", "v2", load_policy(None))
            except SpecError as err:
                assert all(issue.file and issue.line >= 1 for issue in err.issues), loc


def test_env_files_and_extended_files_that_are_not_regular_files_are_refused(
    tmp_path: Path,
) -> None:
    """A FIFO would block the import forever, /dev/zero would never end: both refused."""
    os.mkfifo(tmp_path / "app.env")
    (tmp_path / "zero.yml").symlink_to("/dev/zero")
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  a:\n    image: x\n    env_file: app.env\n")
    with pytest.raises(SpecError, match=r"app\.env: it is not a regular file but a FIFO"):
        import_compose(read_compose([str(compose)]), "f")
    compose.write_text("services:\n  a:\n    extends: {file: zero.yml, service: x}\n")
    with pytest.raises(SpecError, match="not a regular file but a character device"):
        read_compose([str(compose)])
