"""The connection to the Docker engine, shared by the observer and the applier.

Every request is counted, so benchmarks and tests can check how many calls a pass makes,
and bounded by ``timeout`` (``--engine-timeout``): an engine that accepts a connection and
never answers fails the call in that time instead of holding dsr for minutes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

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
