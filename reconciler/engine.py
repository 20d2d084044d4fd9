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
import select
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

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
        # Kept-open connections for post_json, to a local socket only.
        self._idle: queue.SimpleQueue[_SocketConnection] = queue.SimpleQueue()

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        with self._counting:
            self.calls += 1

    def close(self) -> None:
        self.api.close()
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                break

    @property
    def _socket_path(self) -> str | None:
        """The local socket's path, when the engine is reached through one."""
        path = getattr(getattr(self.api, "_custom_adapter", None), "socket_path", None)
        return path if self.url.startswith("unix://") and isinstance(path, str) else None

    def create_volume(
        self, name: str, driver: str, driver_opts: Mapping[str, str], labels: Mapping[str, str]
    ) -> Any:
        """``docker volume create``, as docker-py's ``create_volume`` asks it."""
        if self._socket_path is None:
            return self.api.create_volume(
                name=name, driver=driver, driver_opts=dict(driver_opts), labels=dict(labels)
            )
        body = {"Name": name, "Driver": driver, "DriverOpts": dict(driver_opts)}
        return self.post_json("/volumes/create", {**body, "Labels": dict(labels)})

    def create_container(self, config: Mapping[str, Any], name: str) -> Any:
        """``docker create`` of ``config`` (docker-py's ``create_container_config``)."""
        if self._socket_path is None:
            return self.api.create_container_from_config(dict(config), name)  # type: ignore[no-untyped-call]
        return self.post_json("/containers/create", config, {"name": name})

    def post_json(
        self, path: str, body: Mapping[str, Any], params: Mapping[str, str] | None = None
    ) -> Any:
        """The JSON answer to ``POST path`` of ``body`` (its None values left out, as
        docker-py sends it) over the local socket, on connections kept open between calls;
        an engine error raised as docker-py raises it (NotFound, ImageNotFound, APIError).

        Like the inspects (see ``inspect_containers``): an apply makes one create per
        object, and docker-py's session costs more CPU than the engine's answer takes.
        """
        socket_path = self._socket_path
        if socket_path is None:
            raise ValueError("post_json is for an engine reached through a local socket")
        target = f"/v{self.api.api_version}{path}" + (f"?{urlencode(params)}" if params else "")
        data = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
        connection = self._connection(socket_path)
        try:
            connection.request("POST", target, data, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        except http.client.HTTPException as err:  # a malformed or cut answer
            connection.close()
            raise docker.errors.APIError(f"the engine's answer to POST {path}: {err!r}") from err
        except BaseException:
            connection.close()  # mid-request: the next one opens it afresh
            raise
        finally:
            self._idle.put(connection)
        with self._counting:
            self.calls += 1
        if response.status >= 400:
            _raise_api_error(response.status, response.reason, answer, target)
        return json.loads(answer) if answer.strip() else None

    def _connection(self, path: str) -> _SocketConnection:
        """An idle kept connection, else a new one. One the engine closed while it was idle
        (it reads as ready: end of file) is closed here and reopens on its next request,
        so a request is never sent on a connection already gone."""
        try:
            connection = self._idle.get_nowait()
        except queue.Empty:
            return _SocketConnection(path, self.timeout)
        sock = connection.sock
        if sock is not None and _readable(sock):
            connection.close()
        return connection

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


def _readable(sock: socket.socket) -> bool:
    """Data or end of file waits on ``sock`` (poll, not select: any descriptor number)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLHUP)
    return bool(poller.poll(0))


def _raise_api_error(status: int, reason: str, body: bytes, url: str) -> NoReturn:
    """The error docker-py raises for this answer (its own mapping, from a response)."""
    response = requests.Response()
    response.status_code = status
    response.reason = reason
    response._content = body
    response.url = url
    response.encoding = "utf-8"
    try:
        response.raise_for_status()
    except requests.HTTPError as err:
        docker.errors.create_api_error_from_http_exception(err)  # raises
    raise docker.errors.APIError(f"{status} {reason}")


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
