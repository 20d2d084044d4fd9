"""The connection to the Docker engine, shared by the observer and the applier.

Every request is counted, so benchmarks and tests can check how many calls a pass makes,
and bounded by ``timeout`` (``--engine-timeout``): an engine that accepts a connection and
never answers fails the call in that time instead of holding dsr for minutes.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import docker
import docker.errors
import requests

from reconciler.errors import EngineError, EngineTimeout

DEFAULT_URL = "unix:///var/run/docker.sock"
# Connections kept to a local socket: the observer's inspectors and the applier's workers
# (--workers goes up to 32) each hold one while a request runs.
POOL_SIZE = 40


def engine_url(base_url: str | None = None) -> str:
    """The engine address dsr uses: ``--docker-host``, else ``DOCKER_HOST``, else the socket."""
    return base_url or os.environ.get("DOCKER_HOST") or DEFAULT_URL


class Engine:
    """A low-level Engine API client with a request counter and a deadline per call."""

    def __init__(self, base_url: str | None = None, timeout: float = 30.0) -> None:
        url = engine_url(base_url)
        self.url = url
        self.timeout = timeout
        self.calls = 0
        self._counting = threading.Lock()  # the observer's calls run in threads
        try:
            # requests takes float seconds; the stub says int
            self.api = docker.APIClient(
                base_url=url,
                version="auto",
                timeout=timeout,  # type: ignore[arg-type]
                max_pool_size=POOL_SIZE,
            )
        except docker.errors.DockerException as err:
            raise describe(err, url, timeout) from err
        except (ValueError, TypeError) as err:  # urllib's words for a malformed address
            raise EngineError(f"the engine address {url!r} is not valid: {err}") from err
        self.api.hooks["response"].append(self._count)
        if url.startswith(("unix://", "npipe://")):
            # No proxy, netrc or CA bundle applies to a local socket, and requests reads the
            # whole environment for them on every call: ~1 ms of CPU, a third of an apply's.
            self.api.trust_env = False
        if url.startswith("unix://"):
            _one_pool(self.api)
        self.calls = 1  # the version negotiation made one call before the hook existed
        # What docker inspect said of the project's containers, by id, for a caller that
        # keeps this connection and hears every container event (the daemon): it clears
        # this on each one, so a pass inspects only what changed. Empty: inspect all.
        self.inspected: dict[str, Any] = {}
        self.keep_inspected = False
        self.inspected_epoch = 0  # grows with each clear: a pass under way keeps nothing

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._counting:
            self.calls += 1

    def close(self) -> None:
        self.api.close()

    def inspect_containers(self, ids: Sequence[str], at_once: int) -> list[dict[str, Any] | None]:
        """``docker inspect`` of each container, ``at_once`` requests at a time, in order;
        None for one gone meanwhile.

        Over a local socket these skip docker-py: its requests session costs ~1 ms of CPU a
        call, several times what the engine takes to answer, and a plan inspects every
        container of its project. A few plain HTTP/1.1 connections, opened for this call
        and closed after it, ask the same ``GET /containers/{id}/json`` it would.
        """
        path = getattr(getattr(self.api, "_custom_adapter", None), "socket_path", None)
        if not self.url.startswith("unix://") or not isinstance(path, str):
            return self._inspect_with_docker_py(ids, at_once)
        idle: queue.SimpleQueue[_SocketConnection] = queue.SimpleQueue()
        opened: list[_SocketConnection] = []
        version = self.api.api_version

        def inspect(container: str) -> dict[str, Any] | None:
            try:
                connection = idle.get_nowait()
            except queue.Empty:
                connection = _SocketConnection(path, self.timeout)
                opened.append(connection)
            try:
                found: dict[str, Any] | None = self._get_json(
                    connection, f"/v{version}/containers/{quote(container, safe='')}/json"
                )
            except BaseException:
                connection.close()  # mid-answer: the next request opens it afresh
                raise
            finally:
                idle.put(connection)
            return found

        try:
            with ThreadPoolExecutor(max_workers=at_once) as pool:
                return list(pool.map(inspect, ids))
        finally:
            for connection in opened:
                connection.close()

    def _inspect_with_docker_py(
        self, ids: Sequence[str], at_once: int
    ) -> list[dict[str, Any] | None]:
        def inspect(container: str) -> dict[str, Any] | None:
            try:
                found: dict[str, Any] = self.api.inspect_container(container)
            except docker.errors.NotFound:
                return None
            return found

        with ThreadPoolExecutor(max_workers=at_once) as pool:
            return list(pool.map(inspect, ids))

    def _get_json(self, connection: http.client.HTTPConnection, path: str) -> Any:
        """The JSON answer to ``GET path``; None when the engine says 404 (gone)."""
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
        except http.client.HTTPException as err:  # a malformed or cut answer
            raise docker.errors.APIError(f"the engine's answer to GET {path}: {err!r}") from err
        with self._counting:
            self.calls += 1
        if response.status == 404:
            return None
        if response.status >= 400:
            try:
                explanation = str(json.loads(body).get("message") or "")
            except (ValueError, AttributeError):
                explanation = body.decode(errors="replace")[:500]
            raise docker.errors.APIError(
                f"{response.status} {response.reason}: {explanation}", explanation=explanation
            )
        return json.loads(body)


class _SocketConnection(http.client.HTTPConnection):
    """HTTP/1.1 to the engine's unix socket, each request bounded by ``timeout``."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def _one_pool(api: docker.APIClient) -> None:
    """Make every request to the local socket share one connection pool.

    docker-py's socket adapter keys its pools by the request's whole URL, and keeps 25: a
    call whose path names an object (an inspect, a create with ``?name=``) gets a pool of
    its own, so each opens a new connection and closing the 26th closes one. There is one
    socket, so one pool serves them all, its connections kept open between calls.
    """
    adapter = getattr(api, "_custom_adapter", None)
    get_connection = getattr(adapter, "get_connection", None)
    if get_connection is None:  # another docker-py: leave its adapter as it is
        return

    def shared(url: str, proxies: Any = None) -> Any:
        return get_connection("http+docker://localhost", proxies)

    adapter.get_connection = shared  # type: ignore[union-attr]


def timed_out(err: BaseException) -> bool:
    """``err`` (or what caused it) is a request that got no answer in time."""
    while err is not None:
        if isinstance(err, requests.exceptions.Timeout | TimeoutError):
            return True
        if "timed out" in str(err).lower() and isinstance(err, requests.RequestException):
            return True
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return False


def describe(err: BaseException, url: str, timeout: float) -> EngineError:
    """The error dsr reports for a failed Engine API call."""
    if timed_out(err):
        return EngineTimeout(
            f"the Docker engine at {url} did not answer within {timeout:g} s "
            "(--engine-timeout); is it hung or overloaded?"
        )
    return EngineError(f"cannot reach the Docker engine at {url}: {err}")
