"""What valid specs turn into: the ``Desired`` state and its models."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pydantic
import pytest

from reconciler.errors import SpecError
from reconciler.spec import Desired, Mount, Origin, VolumesFrom, find_spec_files, load_spec
from reconciler.spec.yamlload import expand_vars


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, text: str, **env: str) -> Desired:
    """One spec file ``web/spec.yaml`` loaded with exactly ``env`` as the environment."""
    return load_spec(str(write(tmp_path / "web" / "spec.yaml", text)), env=env)


def mounts_of(tmp_path: Path, *mounts: str, **env: str) -> list[Mount]:
    """The mounts of one volume container, each given as YAML of one list item."""
    items = "".join(f"      - {m}\n" for m in mounts)
    text = f"version: 1\nvolumes:\n  data: {{}}\nvolume_containers:\n  vc:\n    mounts:\n{items}"
    return list(load(tmp_path, text, **env).volume_containers["vc"].mounts)


# --- mounts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "long"),
    [
        pytest.param("data:/srv", "{type: volume, source: data, target: /srv}", id="volume"),
        pytest.param(
            "data:/srv:ro,nocopy",
            "{type: volume, source: data, target: /srv, read_only: true, nocopy: true}",
            id="volume-ro-nocopy",
        ),
        pytest.param("data:/srv:rw", "{type: volume, source: data, target: /srv}", id="volume-rw"),
        pytest.param(
            "./htdocs:/usr/local/apache2/htdocs:ro",
            "{type: bind, source: ./htdocs, target: /usr/local/apache2/htdocs, read_only: true}",
            id="bind-ro",
        ),
        pytest.param(
            "./htdocs:/srv:z,rshared",
            "{type: bind, source: ./htdocs, target: /srv, selinux: z, propagation: rshared}",
            id="bind-z-rshared",
        ),
        pytest.param(
            "./htdocs/:/srv/:Z,ro,private",
            "{type: bind, source: ./htdocs, target: /srv, read_only: true, selinux: Z, "
            "propagation: private}",
            id="bind-trailing-slashes",
        ),
        pytest.param("/var/cache/app", "{type: volume, target: /var/cache/app}", id="anonymous"),
    ],
)
def test_short_and_long_forms_are_the_same_mount(tmp_path: Path, short: str, long: str) -> None:
    (tmp_path / "web" / "htdocs").mkdir(parents=True)
    text = f"""
        version: 1
        volumes:
          data: {{}}
        volume_containers:
          vc-short:
            mounts: ["{short}"]
          vc-long:
            mounts: [{long}]
        """
    desired = load(tmp_path, text)
    (first,) = desired.volume_containers["vc-short"].mounts
    (second,) = desired.volume_containers["vc-long"].mounts
    assert first == second


def test_short_form_fields(tmp_path: Path) -> None:
    (tmp_path / "web" / "htdocs").mkdir(parents=True)
    bind, volume, anonymous = mounts_of(
        tmp_path, "./htdocs:/srv:ro,z,rslave", "data:/data:nocopy", "/var/cache/app"
    )
    assert bind == Mount(
        type="bind",
        source=str(tmp_path / "web" / "htdocs"),
        target="/srv",
        read_only=True,
        selinux="z",
        propagation="rslave",
    )
    assert not bind.anonymous
    assert volume == Mount(type="volume", source="data", target="/data", nocopy=True)
    assert anonymous == Mount(type="volume", target="/var/cache/app")
    assert anonymous.anonymous and anonymous.source is None and not anonymous.read_only


def test_tmpfs_mount(tmp_path: Path) -> None:
    (tmpfs,) = mounts_of(tmp_path, "{type: tmpfs, target: /tmp/cache, tmpfs_size: 65536}")
    assert tmpfs == Mount(type="tmpfs", target="/tmp/cache", tmpfs_size=65536)


def test_relative_bind_source_is_relative_to_the_spec_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "web" / "htdocs").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (bind, parent) = mounts_of(tmp_path, "./htdocs:/srv", "../web/./htdocs/:/other")
    assert bind.source == str(tmp_path / "web" / "htdocs")
    assert parent.source == str(tmp_path / "web" / "htdocs")


def test_relative_bind_source_in_a_subfolder_file(tmp_path: Path) -> None:
    (tmp_path / "specs" / "web" / "htdocs").mkdir(parents=True)
    write(tmp_path / "specs" / "top.yaml", "version: 1\n")
    write(
        tmp_path / "specs" / "web" / "web.yaml",
        """
        version: 1
        volume_containers:
          vc:
            mounts: [./htdocs:/srv]
        """,
    )
    desired = load_spec(str(tmp_path / "specs"), env={})
    assert desired.volume_containers["vc"].mounts[0].source == str(
        tmp_path / "specs" / "web" / "htdocs"
    )


def test_tilde_expands_to_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "test").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    short, long = mounts_of(tmp_path, "~/test:/srv", "{type: bind, source: ~/test/, target: /x}")
    assert short.source == long.source == str(home / "test")


def test_image_context_and_backup_paths_are_resolved(tmp_path: Path) -> None:
    (tmp_path / "web" / "htdocs").mkdir(parents=True)
    desired = load(
        tmp_path,
        """
        version: 1
        images:
          htdocs: {context: ./htdocs, path: /usr/local/apache2/htdocs/}
        backups:
          nightly:
            paths: [./htdocs, /srv/data/]
            destination: ./backups
        """,
    )
    image = desired.images["htdocs"]
    assert image.context == str(tmp_path / "web" / "htdocs")
    assert image.path == "/usr/local/apache2/htdocs"
    assert image.base == "scratch"
    backup = desired.backups["nightly"]
    assert backup.paths == [str(tmp_path / "web" / "htdocs"), "/srv/data"]
    assert backup.destination == str(tmp_path / "web" / "backups")
    assert not (tmp_path / "web" / "backups").exists()


# --- variables -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        pytest.param("${TAG}", {"TAG": "2.4"}, "2.4", id="set"),
        pytest.param("httpd:${TAG:-2.4}", {}, "httpd:2.4", id="colon-default-unset"),
        pytest.param("httpd:${TAG:-2.4}", {"TAG": ""}, "httpd:2.4", id="colon-default-empty"),
        pytest.param("httpd:${TAG:-2.4}", {"TAG": "2.2"}, "httpd:2.2", id="colon-default-set"),
        pytest.param("httpd:${TAG-2.4}", {}, "httpd:2.4", id="dash-default-unset"),
        pytest.param("x${TAG-2.4}y", {"TAG": ""}, "xy", id="dash-default-empty-kept"),
        pytest.param("$${TAG}", {"TAG": "no"}, "${TAG}", id="dollar-dollar"),
        pytest.param("cost $$5", {}, "cost $5", id="dollar-dollar-plain"),
        pytest.param("$TAG", {"TAG": "no"}, "$TAG", id="bare-dollar-untouched"),
        pytest.param("${A}/${B:-b}", {"A": "a"}, "a/b", id="two"),
        pytest.param("${URL:-http://x:80/y}", {}, "http://x:80/y", id="default-with-colons"),
    ],
)
def test_expand_vars(text: str, env: dict[str, str], expected: str) -> None:
    assert expand_vars(text, env) == (expected, [])


def test_variables_expand_in_spec_values(tmp_path: Path) -> None:
    (tmp_path / "srv" / "htdocs").mkdir(parents=True)
    desired = load(
        tmp_path,
        """
        version: 1
        containers:
          web1:
            image: ${IMAGE:-httpd}:${TAG-2.4}
            command: [echo, "$${HOME}", "${GREETING}"]
            mounts: ["${ROOT}/htdocs:/usr/local/apache2/htdocs:ro"]
        """,
        ROOT=str(tmp_path / "srv"),
        GREETING="hello world",
    )
    web1 = desired.containers["web1"]
    assert web1.image == "httpd:2.4"
    assert web1.command == ["echo", "${HOME}", "hello world"]
    assert web1.mounts[0].source == str(tmp_path / "srv" / "htdocs")


def test_env_argument_replaces_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSR_TEST_TAG", "from-process")
    text = "version: 1\ncontainers:\n  web1:\n    image: httpd:${DSR_TEST_TAG:-default}\n"
    assert load(tmp_path, text).containers["web1"].image == "httpd:default"
    path = str(tmp_path / "web" / "spec.yaml")
    assert load_spec(path).containers["web1"].image == "httpd:from-process"


# --- containers --------------------------------------------------------------------------


def test_env_list_and_mapping_are_the_same(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        containers:
          as-list:
            image: httpd:2.4
            env: [DEBUG=true, PORT=80, URL=http://x/?a=b, EMPTY=]
          as-mapping:
            image: httpd:2.4
            env: {DEBUG: true, PORT: 80, URL: "http://x/?a=b", EMPTY: ""}
        """,
    )
    expected = {"DEBUG": "true", "PORT": "80", "URL": "http://x/?a=b", "EMPTY": ""}
    assert desired.containers["as-list"].env == expected
    assert desired.containers["as-mapping"].env == expected


def test_command_and_entrypoint_forms(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        containers:
          shell:
            image: busybox
            command: echo "hi" && sleep 1
            entrypoint: /docker-entrypoint.sh
          exec:
            image: busybox
            command: [httpd-foreground]
        """,
    )
    shell = desired.containers["shell"]
    assert shell.command == ["/bin/sh", "-c", 'echo "hi" && sleep 1']
    assert shell.entrypoint == ["/bin/sh", "-c", "/docker-entrypoint.sh"]
    assert desired.containers["exec"].command == ["httpd-foreground"]
    assert desired.containers["exec"].entrypoint is None


def test_volumes_from_modes(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        volume_containers:
          vc_data: {}
          vc_tools: {}
          vc_logs: {}
        containers:
          web1:
            image: httpd:2.4
            volumes_from: [vc_data, "vc_tools:ro", "vc_logs:rw"]
          web2:
            image: httpd:2.4
            volumes_from: [{name: web1, read_only: true}]
        """,
    )
    assert desired.containers["web1"].volumes_from == [
        VolumesFrom(name="vc_data", read_only=None),
        VolumesFrom(name="vc_tools", read_only=True),
        VolumesFrom(name="vc_logs", read_only=False),
    ]
    assert desired.containers["web2"].volumes_from == [VolumesFrom(name="web1", read_only=True)]


def test_container_defaults(tmp_path: Path) -> None:
    text = "version: 1\ncontainers:\n  web1:\n    image: httpd:2.4\n"
    web1 = load(tmp_path, text).containers["web1"]
    assert web1.state == "running"
    assert web1.restart == "no"
    assert (web1.mounts, web1.volumes_from, web1.env, web1.ports, web1.labels) == (
        [],
        [],
        {},
        [],
        {},
    )


def test_ports_and_restart_accepted(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        containers:
          registry:
            image: registry:2
            ports: ["5000:5000", "127.0.0.1:8080:80/tcp", "[::1]::53/udp", "9000-9001:9000-9001", "80"]
            restart: on-failure:3
            state: created
        """,
    )
    registry = desired.containers["registry"]
    assert registry.ports == [
        "5000:5000",
        "127.0.0.1:8080:80/tcp",
        "[::1]::53/udp",
        "9000-9001:9000-9001",
        "80",
    ]
    assert registry.restart == "on-failure:3"
    assert registry.state == "created"


def test_image_key_and_image_reference(tmp_path: Path) -> None:
    (tmp_path / "web" / "ctx").mkdir(parents=True)
    desired = load(
        tmp_path,
        """
        version: 1
        images:
          htdocs: {context: ./ctx, path: /srv}
        volume_containers:
          vc_packed: {image: htdocs}
          vc_plain: {}
        containers:
          web1: {image: "localhost:5000/team/httpd:2.4"}
          web2: {image: "httpd@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
        """,
    )
    assert desired.volume_containers["vc_packed"].image == "htdocs"
    assert desired.volume_containers["vc_plain"].image is None
    assert desired.containers["web1"].image == "localhost:5000/team/httpd:2.4"


# --- volumes and backups -----------------------------------------------------------------


def test_volume_defaults_and_empty_entries(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        volumes:
          data:
          certs: {external: true}
          logs: {driver: local, driver_opts: {type: tmpfs, device: tmpfs}, labels: {team: web},
                 reclaim: backup-then-delete, on_change: migrate}
        """,
    )
    data = desired.volumes["data"]
    assert (data.driver, data.driver_opts, data.labels, data.external) == ("local", {}, {}, False)
    assert (data.reclaim, data.on_change) == ("retain", "block")
    assert desired.volumes["certs"].external
    logs = desired.volumes["logs"]
    assert logs.driver_opts == {"type": "tmpfs", "device": "tmpfs"}
    assert (logs.reclaim, logs.on_change) == ("backup-then-delete", "migrate")


def test_keep_rules(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        volumes:
          data: {}
        backups:
          nightly:
            volumes: [data]
            schedule: "0 3 * * *"
            keep: {last: 3, hourly: -1, daily: 7, within: 1y2m3d4h, within_daily: 7d}
            quiesce: true
        """,
    )
    backup = desired.backups["nightly"]
    assert (backup.keep.last, backup.keep.hourly, backup.keep.daily) == (3, -1, 7)
    assert backup.keep.weekly is None
    assert (backup.keep.within, backup.keep.within_daily) == ("1y2m3d4h", "7d")
    assert backup.quiesce and backup.destination is None


def test_empty_sections(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        volumes:
        images:
        volume_containers: {}
        containers:
        backups:
        """,
    )
    assert desired.counts() == {
        "volume": 0,
        "image": 0,
        "volume container": 0,
        "container": 0,
        "backup": 0,
    }


def test_x_keys_anchors_and_merge_keys(tmp_path: Path) -> None:
    desired = load(
        tmp_path,
        """
        version: 1
        x-web: &web
          image: httpd:2.4
          restart: always
          env: {LANG: C}
        x-anything: [1, {nested: true}]
        containers:
          web1:
            <<: *web
          web2:
            <<: *web
            restart: unless-stopped
          web3:
            restart: "no"
            <<: *web
        """,
    )
    web1, web2, web3 = (desired.containers[n] for n in ("web1", "web2", "web3"))
    assert (web1.image, web1.restart, web1.env) == ("httpd:2.4", "always", {"LANG": "C"})
    assert (web2.image, web2.restart) == ("httpd:2.4", "unless-stopped")
    assert (web3.image, web3.restart) == ("httpd:2.4", "no")  # an explicit key wins


def test_models_are_frozen(tmp_path: Path) -> None:
    desired = load(tmp_path, "version: 1\nvolumes:\n  data: {}\n")
    with pytest.raises(pydantic.ValidationError):
        desired.volumes["data"].driver = "other"  # type: ignore[misc]


# --- files, projects and origins ------------------------------------------------------


def test_directory_files_merge_sorted_and_recursive(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    write(specs / "b.yaml", "version: 1\nvolumes:\n  vol-b: {}\n")
    write(specs / "a.yml", "version: 1\nvolumes:\n  vol-a: {}\n")
    write(specs / "sub" / "deeper" / "c.yaml", "version: 1\nvolumes:\n  vol-c: {}\n")
    write(specs / "notes.txt", "version: 1\nvolumes:\n  ignored: {}\n")
    write(specs / "README.md", "# not a spec\n")
    write(specs / ".hidden" / "d.yaml", "not: [valid\n")
    expected = [str(specs / "a.yml"), str(specs / "b.yaml"), str(specs / "sub/deeper/c.yaml")]
    assert find_spec_files(str(specs)) == expected
    desired = load_spec(str(specs), env={})
    assert desired.files == tuple(expected)
    assert sorted(desired.volumes) == ["vol-a", "vol-b", "vol-c"]
    assert desired.project == "specs"


def test_file_names_keep_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "specs" / "web.yaml", "version: 1\n")
    monkeypatch.chdir(tmp_path)
    assert find_spec_files("specs") == ["specs/web.yaml"]
    assert find_spec_files("./specs/") == ["specs/web.yaml"]
    monkeypatch.chdir(tmp_path / "specs")
    assert find_spec_files(".") == ["web.yaml"]
    assert find_spec_files("web.yaml") == ["web.yaml"]


@pytest.mark.parametrize(
    ("folder", "project"),
    [
        pytest.param("web", "web", id="plain"),
        pytest.param("My_App-v2", "my_app-v2", id="lowercased"),
        pytest.param("2026_site", "2026_site", id="digit-first"),
    ],
)
def test_project_from_folder_name(tmp_path: Path, folder: str, project: str) -> None:
    spec = write(tmp_path / folder / "spec.yaml", "version: 1\n")
    assert load_spec(str(tmp_path / folder), env={}).project == project
    assert load_spec(str(spec), env={}).project == project  # a file: its folder's name


@pytest.mark.parametrize(
    "folder",
    ["My_App.v2", "-_Front End", "Über-Site", "...", "site\u0130", "ｗｅｂ", "web\u200b", "_web"],
)
def test_a_folder_name_that_is_no_project_name_asks_for_one(tmp_path: Path, folder: str) -> None:
    # Stripping what is invalid made unrelated spec sets share one project (`default`).
    write(tmp_path / folder / "spec.yaml", "version: 1\n")
    with pytest.raises(SpecError) as raised:
        load_spec(str(tmp_path / folder), env={})
    (issue,) = raised.value.issues
    assert issue.path == "project" and issue.line == 1
    assert "is not a valid project name" in issue.message and "set 'project:'" in issue.message
    assert load_spec(str(tmp_path / folder), project="web", env={}).project == "web"


def test_project_precedence(tmp_path: Path) -> None:
    plain = write(tmp_path / "folder" / "plain.yaml", "version: 1\n")
    named = write(tmp_path / "other" / "named.yaml", "version: 1\nproject: web\n")
    assert load_spec(str(plain), env={}).project == "folder"
    assert load_spec(str(plain), project="api", env={}).project == "api"
    assert load_spec(str(named), env={}).project == "web"
    assert load_spec(str(named), project="web", env={}).project == "web"


def test_origins_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "specs" / "a.yaml",
        """
        # storage
        version: 1
        volumes:
          data: {}

          logs:
            driver: local
        images:
          htdocs: {context: ., path: /srv}
        """,
    )
    write(
        tmp_path / "specs" / "b.yaml",
        """
        version: 1
        volume_containers:
          vc_data:
            mounts: [/var/cache/app]
        containers:
          web1:
            image: htdocs
        backups:
          nightly: {volumes: [data, logs]}
        """,
    )
    desired = load_spec("specs", env={})
    assert desired.origins == {
        "volume:data": Origin("specs/a.yaml", 4),
        "volume:logs": Origin("specs/a.yaml", 6),
        "image:htdocs": Origin("specs/a.yaml", 9),
        "volume_container:vc_data": Origin("specs/b.yaml", 3),
        "container:web1": Origin("specs/b.yaml", 6),
        "backup:nightly": Origin("specs/b.yaml", 9),
    }
    assert str(desired.origins["container:web1"]) == "specs/b.yaml:6"
    assert desired.files == ("specs/a.yaml", "specs/b.yaml")


def test_seed_examples_are_valid() -> None:
    seed = Path(__file__).resolve().parents[2] / "specs" / "examples" / "seed"
    if not list(seed.glob("*.yaml")):
        pytest.skip("no seed specs yet")
    desired = load_spec(str(seed), env={})
    assert desired.project == "seed"
    assert len(desired.files) == len(list(seed.rglob("*.yaml")) + list(seed.rglob("*.yml")))


def test_project_optional_lets_diff_read_old_from_any_folder(tmp_path: Path) -> None:
    # CI checks OLD out in folders like tmp.Xy12: dsr diff takes NEW's project for it.
    write(tmp_path / "tmp.Xy12" / "spec.yaml", "version: 1\n")
    desired = load_spec(str(tmp_path / "tmp.Xy12"), env={}, project_optional=True)
    assert (desired.project, desired.project_from_folder) == ("default", True)
