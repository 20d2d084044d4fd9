"""The engine connection keeps its socket connections open between calls: calls on
different objects (an inspect each, a create with ``?name=``) reuse one connection instead
of opening one per URL (docker-py keys its socket pools by the whole URL). Its
``inspect_containers`` asks the socket directly, a few connections at once, and answers
as docker-py's inspect would: in order, None for a container gone, an APIError else."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import docker.errors
import pytest

from reconciler.engine import Engine


class _Answers(BaseHTTPRequestHandler):
    """Just enough of the Engine API for version negotiation and inspects, over HTTP/1.1
    keep-alive, counting the connections it is given."""

    protocol_version = "HTTP/1.1"
    connections: list[int]

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)

    def do_GET(self) -> None:
        body: dict[str, object]
        status = 200
        if self.path.endswith("/version"):
            body = {"ApiVersion": "1.43", "Version": "24.0.0"}
        elif self.path.endswith("/gone/json"):
            status, body = 404, {"message": "No such container: gone"}
        elif self.path.endswith("/broken/json"):
            status, body = 500, {"message": "the engine broke"}
        else:
            body = {"Id": self.path.split("/")[-2], "Config": {}, "HostConfig": {}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        sent = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, body = 201, {"Id": "new", "Sent": sent, "Path": self.path}
        if self.path.endswith("name=taken"):
            status, body = 409, {"message": "Conflict. The container name is already in use"}
        elif self.path.endswith("name=noimage"):
            status, body = 404, {"message": "No such image: nothing:1"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        # The engine may close an idle kept-alive connection without a word: this one does
        # it after answering, so the client's next request must not be sent on it.
        self.close_connection = self.path.endswith("name=bye")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    path = str(tmp_path / "engine.sock")
    connections: list[int] = []
    handler = type("Handler", (_Answers,), {"connections": connections})
    server = socketserver.ThreadingUnixStreamServer(path, handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}", connections
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def pool(engine_socket: tuple[str, list[int]]) -> Iterator[tuple[Engine, list[int]]]:
    """An ``Engine`` on that socket (closed after the test) and the socket's connections."""
    url, connections = engine_socket
    made = Engine(url, timeout=5)
    try:
        yield made, connections
    finally:
        made.close()


def test_inspects_of_many_objects_share_one_connection(
    pool: tuple[Engine, list[int]],
) -> None:
    engine, connections = pool
    before = len(connections)  # the version negotiation's
    for n in range(40):  # more objects than docker-py keeps pools (25)
        assert engine.api.inspect_container(f"c{n:02d}")["Id"] == f"c{n:02d}"
    opened = len(connections) - before
    assert opened == 1, f"40 inspects opened {opened} connections"
    assert engine.calls == 41


def test_inspect_containers_answers_in_order_over_a_few_connections(
    pool: tuple[Engine, list[int]],
) -> None:
    engine, connections = pool
    before, calls = len(connections), engine.calls
    ids = [f"c{n:02d}" for n in range(40)]
    found = engine.inspect_containers([*ids[:20], "gone", *ids[20:]], 4)
    opened = len(connections) - before
    assert [f["Id"] if f else None for f in found] == [*ids[:20], None, *ids[20:]]
    assert 1 <= opened <= 4
    assert engine.calls - calls == 41


def test_inspect_containers_raises_the_engines_error(
    pool: tuple[Engine, list[int]],
) -> None:
    engine, _ = pool
    with pytest.raises(docker.errors.APIError, match="the engine broke"):
        engine.inspect_containers(["c01", "broken", "c02"], 2)


def test_creates_are_posted_as_docker_py_posts_them_and_reuse_one_connection(
    pool: tuple[Engine, list[int]],
) -> None:
    engine, connections = pool
    before, calls = len(connections), engine.calls
    made = [engine.create_container({"Image": "x:1", "Cmd": None}, f"c{n}") for n in range(30)]
    volume = engine.create_volume("v", "local", {}, {"dsr.kind": "volume"})
    opened = len(connections) - before
    assert made[7]["Sent"] == {"Image": "x:1"}  # None left out, as docker-py's _post_json
    assert made[7]["Path"].endswith("/containers/create?name=c7")
    assert volume["Sent"] == {
        "Name": "v",
        "Driver": "local",
        "DriverOpts": {},
        "Labels": {"dsr.kind": "volume"},
    }
    assert opened == 1
    assert engine.calls - calls == 31


def test_a_create_fails_with_docker_pys_errors(pool: tuple[Engine, list[int]]) -> None:
    engine, _ = pool
    with pytest.raises(docker.errors.ImageNotFound, match="No such image"):
        engine.create_container({"Image": "nothing:1"}, "noimage")
    with pytest.raises(docker.errors.APIError) as conflict:
        engine.create_container({"Image": "x:1"}, "taken")
    assert conflict.value.status_code == 409
    assert not isinstance(conflict.value, docker.errors.NotFound)


def test_a_connection_the_engine_closed_while_idle_is_not_used_again(
    pool: tuple[Engine, list[int]],
) -> None:
    engine, connections = pool
    before = len(connections)
    engine.create_container({"Image": "x:1"}, "bye")  # the server closes it after this
    time.sleep(0.2)
    assert engine.create_container({"Image": "x:1"}, "next")["Id"] == "new"
    assert len(connections) - before == 2
