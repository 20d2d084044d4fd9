"""deploy/grafana/dsr-dashboard.json: every series it queries is one the daemon exports,
every query is narrowed to the chosen projects, and the layout fits Grafana's grid."""

from __future__ import annotations

import json
import re
from pathlib import Path

from reconciler.daemon.metrics import Metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy/grafana/dsr-dashboard.json"


def exported() -> set[str]:
    """Sample names the daemon's /metrics carries (every labelled metric given a value)."""
    m = Metrics()
    m.project = "web"
    m.reconcile.labels("ok").inc()
    m.duration.observe(0.1)
    m.changes.labels("create", "ok", "missing").inc()
    m.drift.labels("stopped").inc()
    m.resources.labels("volume", "in_sync").set(1)
    m.backup_success.labels("volume:a").set(1)
    m.backup_bytes.labels("volume:a").set(1)
    m.backup_failures.labels("nightly", "backup").inc()
    m.notifications.labels("blocked", "sent").inc()
    text = m.text().decode()
    names = {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1] != "#"}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert 'project="web"' in line, line
    return names


def test_the_dashboard_queries_what_the_daemon_exports() -> None:
    doc = json.loads(DASHBOARD.read_text())
    names = exported()
    queries = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert queries
    used = {n for q in queries for n in re.findall(r"\bdsr_[a-z_]+", q)}
    assert used <= names, used - names
    # The ones an operator reads first each have a panel.
    for family in ("dsr_resources", "dsr_reconcile_total", "dsr_backup_last_success_",
                   "dsr_git_pull_failures_total", "dsr_suspended", "dsr_drift_total"):  # fmt: skip
        assert any(n.startswith(family) for n in used), family
    for query in queries:
        assert 'project=~"$project"' in query, query
    project = next(v for v in doc["templating"]["list"] if v["name"] == "project")
    assert "label_values(dsr_reconcile_total, project)" in json.dumps(project)


def test_the_layout_fits_the_grid() -> None:
    doc = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in doc["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
