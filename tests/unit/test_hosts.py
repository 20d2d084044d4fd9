"""``hosts:``: which host gets which resources, each host's share, and fleet plans.

Offline throughout: the engine's identity (``docker info``) is the only Docker input, and
here it is a literal ``Host``; ``dsr diff --hosts`` runs with an unreachable DOCKER_HOST.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.errors import SpecError
from reconciler.fleet import fleet_plan
from reconciler.spec import load_spec
from reconciler.spec.hosts import Host, matches, selector_problem
from reconciler.spec.inventory import load_inventory
from reconciler.spec.share import share, shares

SPEC = """\
version: 1
project: fleet
hosts: [web-*]
volumes:
  shared:
    hosts: null
  cache: {}
  pgdata:
    hosts: [role=db]
containers:
  app:
    image: busybox:1
    mounts: [cache:/cache, shared:/shared]
  db:
    image: busybox:1
    hosts: [role=db, db-?]
    mounts: [pgdata:/var/lib/pg]
backups:
  nightly:
    hosts: [role=db]
    volumes: [pgdata]
"""

WEB = Host("web-1", {"role": "web"})
DB = Host("db-1", {"role": "db"})
OTHER = Host("mail", {})


def write(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text))
    return folder


@pytest.mark.parametrize(
    ("selectors", "host", "expected"),
    [
        (None, WEB, True),
        (["web-1"], WEB, True),
        (["web-*"], WEB, True),
        (["web-?"], Host("web-10"), False),
        (["WEB-*"], WEB, False),  # case sensitive, as host names are compared by Docker
        (["role=web"], WEB, True),
        (["role=w*"], WEB, True),
        (["role=db"], WEB, False),
        (["zone=eu"], WEB, False),  # a label the host does not have
        (["db-1", "role=web"], WEB, True),  # any selector
    ],
)
def test_selectors(selectors: list[str] | None, host: Host, expected: bool) -> None:
    assert matches(selectors, host) is expected


@pytest.mark.parametrize(
    "bad", ["", "web 1", "role=", "=db", "a\x1bb", "role= db", "x" * 300, "web/1"]
)
def test_bad_selectors_are_refused(bad: str) -> None:
    assert selector_problem(bad) is not None


def test_each_host_gets_its_share(tmp_path: Path) -> None:
    desired = load_spec(str(write(tmp_path, SPEC)))
    web = share(desired, WEB)
    assert set(web.volumes) == {"shared", "cache"}
    assert set(web.containers) == {"app"}
    assert not web.backups
    assert web.host == "web-1"
    assert "volume:pgdata" in web.elsewhere
    db = share(desired, DB)
    assert set(db.volumes) == {"shared", "pgdata"}
    assert set(db.containers) == {"db"}
    assert set(db.backups) == {"nightly"}
    assert set(share(desired, OTHER).volumes) == {"shared"}
    assert share(web, WEB) is web  # a share is its own share


def test_a_spec_without_hosts_is_every_hosts_whole_share(tmp_path: Path) -> None:
    desired = load_spec(str(write(tmp_path, "version: 1\nvolumes: {aa: {}}\n")))
    assert not desired.placements and not desired.references
    assert share(desired, OTHER).volumes.keys() == {"aa"}


def test_a_reference_to_a_resource_placed_elsewhere_names_file_line_and_path(
    tmp_path: Path,
) -> None:
    folder = write(tmp_path, SPEC.replace("backups:", _stray() + "backups:"))
    desired = load_spec(str(folder))
    with pytest.raises(SpecError) as caught:
        share(desired, DB)
    (issue,) = caught.value.issues
    assert str(issue) == (
        f"{folder / 'spec.yaml'}:21: containers.stray.mounts[0].source: volume 'cache' is "
        "placed on [web-*], not on host db-1, where container stray is"
    )
    share(desired, WEB)  # not on web-1: nothing to resolve there
    with pytest.raises(SpecError):
        shares(desired, [WEB, DB])


def _stray() -> str:
    return "  stray:\n    image: busybox:1\n    hosts: [role=db]\n    mounts: [cache:/c]\n"


def test_a_backup_rule_backs_up_the_volumes_each_host_has(tmp_path: Path) -> None:
    """A rule on every host lists volumes of several hosts: each backs up its own."""
    rule = "    hosts: null\n    volumes: [pgdata, cache]"
    folder = write(tmp_path, SPEC.replace("    hosts: [role=db]\n    volumes: [pgdata]", rule))
    desired = load_spec(str(folder))
    assert share(desired, DB).backups["nightly"].volumes == ["pgdata"]
    assert share(desired, WEB).backups["nightly"].volumes == ["cache"]
    assert not share(desired, OTHER).backups  # nothing of it here


def test_a_backup_hook_in_a_container_placed_elsewhere_is_an_error(tmp_path: Path) -> None:
    hook = "    hooks: {before: [{container: app, command: [sync]}]}\n"
    folder = write(tmp_path, SPEC + hook)
    desired = load_spec(str(folder))
    with pytest.raises(SpecError) as caught:
        share(desired, DB)
    assert "backups.nightly.hooks.before[0].container: container 'app' is placed on [web-*]" in (
        str(caught.value.issues[0])
    )


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ("[]", "hosts: lists no host"),
        ("[web-1, web-1]", "hosts: a host selector is listed twice"),
        ("['web 1']", "hosts: 'web 1' is not a host name or glob"),
        ("['role=']", "hosts: 'role=': a label selector is KEY=VALUE"),
        ("{a: b}", "hosts: expected a list"),
    ],
)
def test_bad_hosts_are_spec_errors_with_line(tmp_path: Path, hosts: str, message: str) -> None:
    folder = write(tmp_path, f"version: 1\nvolumes:\n  aa:\n    hosts: {hosts}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(str(folder))
    text = str(caught.value.issues[0])
    assert text.startswith(f"{folder / 'spec.yaml'}:4: volumes.aa.")
    assert message in text


def test_a_single_selector_may_be_written_alone(tmp_path: Path) -> None:
    desired = load_spec(str(write(tmp_path, "version: 1\nvolumes:\n  aa: {hosts: web-1}\n")))
    assert desired.placements == {"volume:aa": ("web-1",)}


INVENTORY = """\
version: 1
hosts:
  web-1: {labels: {role: web}, address: "http://127.0.0.1:9180"}
  web-2:
  db-1: {labels: {role: db}}
  mail:
"""


def test_inventory_errors_name_line_and_path(tmp_path: Path) -> None:
    file = tmp_path / "hosts.yaml"
    file.write_text("version: 1\nhosts:\n  web-1: {adress: x}\n  'bad name': {}\n")
    with pytest.raises(SpecError) as caught:
        load_inventory(str(file))
    lines = sorted(str(i) for i in caught.value.issues)
    assert any(":3: hosts.web-1: unknown key 'adress'; did you mean 'address'?" in x for x in lines)
    assert any(":4:" in x and "bad name" in x for x in lines)


def test_fleet_diff_has_a_section_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    old = write(tmp_path / "old", SPEC)
    moved = SPEC.replace("hosts: [role=db, db-?]", "hosts: [role=db, web-2]")
    new = write(
        tmp_path / "new",
        moved.replace("pgdata:\n    hosts: [role=db]", "pgdata:\n    hosts: [role=db, web-2]"),
    )
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(INVENTORY)
    runner = CliRunner()
    args = ["diff", str(old), str(new), "--hosts", str(inventory)]
    text = runner.invoke(cli, args)
    assert text.exit_code == 0, text.output
    assert "== host web-2 ==" in text.output
    assert "+ container:db will be created" in text.output
    assert "No changes on: db-1, mail, web-1" in text.output
    data = json.loads(runner.invoke(cli, [*args, "--format", "json"]).output)
    by_host = {h["host"]: h for h in data["hosts"]}
    assert [c["resource"] for c in by_host["web-2"]["changes"]] == ["volume:pgdata", "container:db"]
    assert not by_host["web-1"]["changes"]
    assert data["summary"]["create"] == 2
    markdown = runner.invoke(cli, [*args, "--format", "markdown"]).output
    assert "#### Host `web-2`" in markdown and "`db-1`" in markdown
    assert runner.invoke(cli, [*args, "--detailed-exitcode"]).exit_code == 2


def test_fleet_diff_reports_a_broken_share_and_plans_the_others(tmp_path: Path) -> None:
    old = load_spec(str(write(tmp_path / "old", SPEC)))
    new = load_spec(str(write(tmp_path / "new", SPEC.replace("backups:", _stray() + "backups:"))))
    hosts = load_inventory(str(_file(tmp_path / "hosts.yaml", INVENTORY))).host_list()
    fleet = fleet_plan(old, new, hosts)
    parts = {p.host.name: p for p in fleet.hosts}
    assert parts["db-1"].plan is None and parts["db-1"].issues
    assert parts["web-1"].plan is not None and not parts["web-1"].plan.changes
    assert fleet.errors


def _file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_validate_checks_each_inventory_hosts_share(tmp_path: Path) -> None:
    folder = write(tmp_path / "s", SPEC.replace("backups:", _stray() + "backups:"))
    inventory = _file(tmp_path / "hosts.yaml", INVENTORY)
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", str(folder)]).exit_code == 0
    bad = runner.invoke(cli, ["validate", str(folder), "--hosts", str(inventory)])
    assert bad.exit_code == 1
    assert "not on host db-1, where container stray is" in bad.output
    assert runner.invoke(cli, ["validate", str(folder), "--host", "mail"]).exit_code == 0
    # db-9 has no labels (none are known offline): db is placed there by db-?, pgdata not
    one = runner.invoke(cli, ["validate", str(folder), "--host", "db-9"])
    assert one.exit_code == 1
    assert "volume 'pgdata' is placed on [role=db], not on host db-9" in one.output


def test_networks_are_placed_and_referenced_like_the_rest(tmp_path: Path) -> None:
    text = (
        "version: 1\n"
        + "networks:\n  backend: {hosts: [role=db]}\n"
        + "containers:\n  app:\n    image: busybox:1\n    hosts: [web-*]\n"
        + "    networks: [backend]\n"
    )
    desired = load_spec(str(write(tmp_path, text)))
    assert desired.placements["network:backend"] == ("role=db",)
    assert set(share(desired, DB).networks) == {"backend"}
    with pytest.raises(SpecError) as caught:
        share(desired, WEB)
    assert "containers.app.networks[0]: network 'backend' is placed on [role=db]" in str(
        caught.value.issues[0]
    )
