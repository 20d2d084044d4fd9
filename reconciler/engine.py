"""The connection to the Docker engine, shared by the observer and the applier.

Every request is counted, so benchmarks and tests can check how many calls a pass makes.
"""

from __future__ import annotations

import os
from typing import Any

import docker
import docker.errors
import requests

from reconciler.errors import EngineError


class Engine:
    """A low-level Engine API client with a request counter."""

    def __init__(self, base_url: str | None = None, timeout: int = 120) -> None:
        url = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.url = url
        self.calls = 0
        try:
            self.api = docker.APIClient(base_url=url, version="auto", timeout=timeout)
        except docker.errors.DockerException as err:
            raise EngineError(f"cannot reach the Docker engine at {url}: {err}") from err
        self.api.hooks["response"].append(self._count)
        if url.startswith(("unix://", "npipe://")):
            # No proxy, netrc or CA bundle applies to a local socket, and requests reads the
            # whole environment for them on every call: ~1 ms of CPU, a third of an apply's.
            self.api.trust_env = False
        self.calls = 1  # the version negotiation made one call before the hook existed

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.calls += 1

    def close(self) -> None:
        self.api.close()
