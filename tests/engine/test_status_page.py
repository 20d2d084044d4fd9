"""The daemon's status page in a real browser, ``/status.json``, ``--notify`` against a
local HTTP server, a suspended daemon, and a git pull that fails."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import pytest
from daemonproc import Starter, run_daemon

__all__ = ["run_daemon"]

DsrRunner = Callable[..., subprocess.CompletedProcess[str]]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,800",
]


class Receiver:
    """A local HTTP server that keeps every JSON body POSTed to it; the first ``fail``
    requests get a 503 (to see the retries)."""

    def __init__(self, fail: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                outer.requests += 1
                if outer.requests <= outer.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(data))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self, name: str) -> list[dict[str, Any]]:
        return [b for b in list(self.bodies) if b["event"] == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail=1)
    yield r
    r.server.shutdown()


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the decoded rows): blank pages have ~1."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, size = 8, b"", (0, 0)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    return size[0], size[1], len(set(zlib.decompress(idat)))


def chromium(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is installed by deploy/setup-docker.sh"
    with tempfile.TemporaryDirectory(prefix="dsr-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=out.parent,
            check=False,
        )


def test_status_page_notify_and_suspend(
    run_daemon: Starter,
    dsr: DsrRunner,
    tmp_spec: Callable[..., Path],
    tmp_path: Path,
    docker_client: docker.DockerClient,
    busybox_image: str,
    prefix: str,
    receiver: Receiver,
) -> None:
    taken = f"{prefix}-taken"
    docker_client.api.create_volume(taken)  # not dsr's: its spec entry is blocked
    spec = tmp_spec(f"""
        version: 1
        volumes:
          {prefix}-data: {{}}
          {taken}: {{}}
        containers:
          {prefix}-web:
            image: {busybox_image}
            state: created
            mounts: [{prefix}-data:/data]
        """)
    suspend = tmp_path / "suspend"
    daemon = run_daemon(
        spec.parent, "--interval", "1", "--suspend-file", str(suspend), "--notify", receiver.url
    )
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    code, body = daemon.get("/status.json")
    assert code == 200
    doc = json.loads(body)
    by = {r["resource"]: r for r in doc["resources"]}
    assert by[f"volume:{taken}"]["state"] == "blocked"
    assert by[f"volume:{taken}"]["reason_code"] == "unmanaged-clash"
    assert by[f"volume:{prefix}-data"]["state"] == "in-sync"
    assert by[f"container:{prefix}-web"]["state"] == "in-sync"
    assert doc["daemon"] == {"pid": daemon.proc.pid, "suspended": False}
    assert doc["last_pass"]["result"] == "blocked" and doc["last_pass"]["by"] == "dsr run"

    # One "blocked" event, though every pass finds it blocked; the first POST got a 503.
    daemon.wait_for(lambda: receiver.events("blocked"), what="a blocked notification")
    [event] = receiver.events("blocked")
    assert event["project"] == prefix and event["format_version"] == 1
    assert event["details"]["changes"] == [
        {"resource": f"volume:{taken}", "reason_code": "unmanaged-clash"}
    ]
    assert receiver.requests >= 2
    assert daemon.metric("dsr_notifications_total", event="blocked", outcome="sent") == 1

    # The page in a real browser, 1280x800: what the JSON says, readable.
    page = tmp_path / "page.png"
    url = f"http://127.0.0.1:{daemon.port}/"
    shot = chromium(url, page, f"--screenshot={page}")
    assert page.exists(), shot.stderr[-2000:]
    width, height, distinct = png_facts(page.read_bytes())
    assert (width, height) == (1280, 800) and distinct > 8
    dom = chromium(url, page, "--dump-dom").stdout
    assert f"project {prefix} on" in dom and 'http-equiv="refresh"' in dom
    assert "<script" not in dom.lower()
    rows = dom.split("<tr>")
    for resource in doc["resources"]:
        [row] = [r for r in rows if f"<td>{resource['resource']}</td>" in r]
        assert f">{resource['state']}</span>" in row
    assert f'id="count-blocked">{doc["counts"]["blocked"]}<' in dom

    # Suspended: not ready, said so by /status.json and dsr status; passes not applied.
    suspend.touch()
    docker_client.api.remove_container(f"{prefix}-web")
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 503, what="unready when suspended")
    assert "suspended" in daemon.get("/readyz")[1]
    daemon.wait_for(
        lambda: json.loads(daemon.get("/status.json")[1])["daemon"]["suspended"],
        what="status.json says suspended",
    )
    daemon.wait_for(
        lambda: any(p["changes"].get("create") == 1 for p in daemon.passes()[-3:]),
        what="a pass that found the container missing",
    )
    suspended = [p for p in daemon.passes() if p["changes"].get("create") == 1]
    assert suspended and not any(p["applied"] for p in suspended)
    doc = json.loads(dsr("status", spec, "--format", "json", check=2).stdout)
    assert doc["daemon"] == {"pid": daemon.proc.pid, "suspended": True}
    assert doc["last_pass"]["result"] == "suspended"
    assert {r["resource"]: r["state"] for r in doc["resources"]}[f"container:{prefix}-web"] == (
        "missing"
    )
    suspend.unlink()
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready again")
    assert os.path.exists(spec)


def git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_a_failing_git_pull_is_unready_counted_and_told(
    run_daemon: Starter,
    tmp_path: Path,
    prefix: str,
    receiver: Receiver,
) -> None:
    remote, checkout = tmp_path / "remote.git", tmp_path / "checkout"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(checkout)], check=True)
    spec = checkout / prefix / "dsr.yaml"
    spec.parent.mkdir()
    spec.write_text(f"version: 1\nvolumes:\n  {prefix}-v: {{}}\n")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "spec")
    git(checkout, "remote", "add", "origin", str(remote))
    git(checkout, "push", "-q", "-u", "origin", "main")
    daemon = run_daemon(spec.parent, "--git-pull", "0.5", "--notify", receiver.url)
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready")
    shutil.rmtree(remote)  # the remote is gone: every pull fails
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 503, what="unready")
    assert "git pull failed" in daemon.get("/readyz")[1]
    assert daemon.metric("dsr_git_pull_failures_total", project=prefix) >= 1
    daemon.wait_for(lambda: receiver.events("git_pull_failed"), what="a git notification")
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    git(checkout, "push", "-q", "origin", "main")
    daemon.wait_for(lambda: daemon.get("/readyz")[0] == 200, what="ready once pulls work")
    assert len(receiver.events("git_pull_failed")) == 1  # told once per failing streak
