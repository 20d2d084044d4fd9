"""Health checks, depends_on and limits in the spec: forms, references, hashes, params."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.plan import plan
from reconciler.plan.model import Plan
from reconciler.plan.params import config_hash
from reconciler.snapshot import Observed
from reconciler.spec import Desired, load_spec
from reconciler.spec.models import Container

SPEC = """
containers:
  db:
    image: busybox:1.36
    healthcheck: {test: "test -f /ready", interval: 2s, retries: 3, start_period: 1m}
    memory: 512m
    cpus: 0.5
    shm_size: 64m
  app:
    image: busybox:1.36
    depends_on: {db: {condition: service_healthy}}
  worker:
    image: busybox:1.36
    depends_on: [app]
"""


def load(tmp_path: Path, text: str) -> Desired:
    path = tmp_path / "spec.yaml"
    path.write_text("version: 1\nproject: web\n" + textwrap.dedent(text))
    return load_spec(str(path), env={})


def test_forms_read_as_compose_writes_them(tmp_path: Path) -> None:
    db = load(tmp_path, SPEC).containers["db"]
    assert db.healthcheck is not None and db.healthcheck.test == ["CMD-SHELL", "test -f /ready"]
    assert (db.healthcheck.interval, db.healthcheck.start_period) == (2, 60)
    assert (db.memory, db.cpus, db.shm_size) == (512 << 20, 0.5, 64 << 20)


def test_the_plan_orders_by_depends_on_and_carries_the_settings(tmp_path: Path) -> None:
    result: Plan = plan(load(tmp_path, SPEC), Observed())
    assert [c.resource for c in result.changes] == [
        "container:db", "container:app", "container:worker",
    ]  # fmt: skip
    db, app, worker = (c.container for c in result.changes)
    assert db is not None and app is not None and worker is not None
    assert db.healthcheck is not None and db.healthcheck.interval == 2_000_000_000
    assert (db.memory, db.nano_cpus, db.shm_size) == (512 << 20, 500_000_000, 64 << 20)
    assert app.wait_healthy == ("db",) and worker.wait_healthy == ()
    assert result.changes[1].depends_on == ("container:db",)
    # A saved plan brings them back whole.
    assert Plan.from_dict(result.to_dict()).changes == result.changes


def test_depends_on_is_order_not_config() -> None:
    plain = Container(image="busybox")
    assert config_hash(plain, "b") == config_hash(
        Container(image="busybox", depends_on=["other"]),  # type: ignore[arg-type]
        "b",
    )
    assert config_hash(plain, "b") != config_hash(Container(image="busybox", memory="64m"), "b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("depends_on: [app]", "depends_on: [ap]", "container 'ap' is not defined"),
        ("depends_on: [app]", "depends_on: [worker]", "cannot depend on itself"),
        ("memory: 512m", "memory: lots", "is not a size"),
        ('test: "test -f /ready"', "test: [RUN, x]", "test must be"),
        ("cpus: 0.5", "cpus: 0", "greater than 0"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, SPEC.replace(old, new))
    assert any(message in str(issue) for issue in caught.value.issues), caught.value.issues


def issues_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load(tmp_path, text)
    return [str(issue) for issue in err.value.issues]


def test_a_start_order_cycle_is_a_spec_error_naming_where_it_starts(tmp_path: Path) -> None:
    assert issues_of(
        tmp_path,
        """
        containers:
          app:
            image: busybox:1.36
            depends_on: [db]
          db:
            image: busybox:1.36
            volumes_from: [data]
          data:
            image: busybox:1.36
            depends_on: {app: {condition: service_healthy}}
        """,
    ) == [
        f"{tmp_path / 'spec.yaml'}:7: containers.app.depends_on.db: depends_on and "
        "volumes_from form a cycle: app -> db -> data -> app (each would have to start "
        "before the other)"
    ]


def test_service_completed_successfully_is_refused_with_why(tmp_path: Path) -> None:
    text = SPEC.replace("condition: service_healthy", "condition: service_completed_successfully")
    [issue] = issues_of(tmp_path, text)
    assert (
        ":13: containers.app.depends_on.db.condition: service_completed_successfully is " in issue
    )
    assert "never waits for one to finish" in issue


def test_a_chain_of_thousands_of_dependencies_plans_without_recursion(tmp_path: Path) -> None:
    chain = "containers:\n" + "".join(
        f"  c{i:04}:\n    image: busybox:1.36\n    depends_on: [c{i + 1:04}]\n" for i in range(3000)
    )
    desired = load(tmp_path, chain + "  c3000:\n    image: busybox:1.36\n")
    result = plan(desired, Observed())
    names = [c.name for c in result.changes if c.kind.value == "container"]
    assert names[0] == "c3000" and names[-1] == "c0000" and len(names) == 3001
