"""``dsr status --fleet INVENTORY`` against real HTTP servers on this machine: agents that
answer, one that is down, one that answers nonsense, one that hangs; none stops the others."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.fleetstatus import Agent, fetch

IN_SYNC = {
    "format_version": 1,
    "project": "web",
    "host": "web-1",
    "in_sync": True,
    "counts": {"in-sync": 3, "drifted": 0, "missing": 0, "blocked": 0},
    "last_pass": {"time": "2026-12-07T17:00:00+00:00", "result": "ok"},
    "backups": [{"source": "volume:data", "overdue": False}],
}
DRIFTED = {
    **IN_SYNC,
    "host": "web-2",
    "in_sync": False,
    "counts": {"in-sync": 2, "drifted": 1},
    "backups": [{"source": "volume:data", "overdue": True}],
}


def serve(answers: dict[str, bytes], delay: float = 0.0) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            body = answers.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            # The client may have given up (it was slow, or the answer too big).
            with contextlib.suppress(OSError):
                self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Path]:
    servers = []
    one, one_url = serve({"/status.json": json.dumps(IN_SYNC).encode()})
    two, two_url = serve({"/status.json": json.dumps(DRIFTED).encode()})
    bad, bad_url = serve({"/status.json": b"<html>hello</html>"})
    slow, slow_url = serve({"/status.json": json.dumps(IN_SYNC).encode()}, delay=3)
    servers += [one, two, bad, slow]
    with socket.socket() as s:  # a port nothing listens on: a host that is down
        s.bind(("127.0.0.1", 0))
        down_url = f"http://127.0.0.1:{s.getsockname()[1]}"
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "version: 1\nhosts:\n"
        f"  web-1: {{address: '{one_url}'}}\n"
        f"  web-2: {{address: '{two_url}'}}\n"
        f"  web-3: {{address: '{down_url}'}}\n"
        f"  web-4: {{address: '{bad_url}'}}\n"
        f"  web-5: {{address: '{slow_url}'}}\n"
        "  web-6: {labels: {role: web}}\n"
    )
    yield inventory
    for server in servers:
        server.shutdown()


def test_one_table_and_every_host_reported(fleet: Path) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(cli, ["status", "--fleet", str(fleet), "--timeout", "1"])
    assert time.monotonic() - started < 4  # asked at once: the slow one costs one timeout
    assert result.exit_code == 2, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("web")}
    assert "up" in lines["web-1"] and "yes" in lines["web-1"] and "3 in-sync" in lines["web-1"]
    assert "NO" in lines["web-2"] and "1 drifted" in lines["web-2"]
    assert lines["web-2"].rstrip().endswith("1")  # one backup overdue
    assert "DOWN" in lines["web-3"]
    assert "BAD-ANSWER" in lines["web-4"]
    assert "DOWN" in lines["web-5"]  # no answer within --timeout
    assert "NO-ADDRESS" in lines["web-6"]
    assert "6 hosts: 1 in sync, 1 differ, 4 not answering" in result.output


def test_json_has_each_agents_status(fleet: Path) -> None:
    result = CliRunner().invoke(
        cli, ["status", "--fleet", str(fleet), "--format", "json", "--timeout", "1"]
    )
    data = json.loads(result.output)
    by_host = {h["host"]: h for h in data["hosts"]}
    assert by_host["web-1"]["state"] == "up" and by_host["web-1"]["in_sync"] is True
    assert by_host["web-1"]["status"]["project"] == "web"
    assert by_host["web-3"]["state"] == "down" and by_host["web-3"]["error"]
    assert by_host["web-3"]["status"] is None


def test_all_in_sync_exits_0(tmp_path: Path) -> None:
    server, url = serve({"/status.json": json.dumps(IN_SYNC).encode()})
    try:
        inventory = tmp_path / "hosts.yaml"
        inventory.write_text(f"version: 1\nhosts:\n  web-1: {{address: '{url}/'}}\n")
        assert CliRunner().invoke(cli, ["status", "--fleet", str(inventory)]).exit_code == 0
    finally:
        server.shutdown()


def test_a_huge_or_hostile_answer_is_refused(tmp_path: Path) -> None:
    server, url = serve(
        {
            "/a/status.json": b"[" * (5 << 20),
            "/b/status.json": json.dumps({"format_version": 2}).encode(),
        }
    )
    try:
        assert fetch(Agent("x", url + "/a"), 5).state == "bad-answer"
        assert fetch(Agent("x", url + "/b"), 5).state == "bad-answer"
    finally:
        server.shutdown()


def test_status_needs_a_path_or_fleet() -> None:
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code != 0
    assert "give a spec PATH, or --fleet INVENTORY" in result.output
