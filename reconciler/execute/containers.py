"""The executors of containers."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import docker
import docker.errors

from reconciler import dockerargs
from reconciler.errors import ApplyError
from reconciler.execute.core import Executors, Run, executes
from reconciler.plan import payloads as p
from reconciler.plan.model import EndpointParams, HealthParams

HEALTH_WAIT = 300  # seconds a dependent waits for its depends_on to become healthy


# -- containers -------------------------------------------------------------------------------
@executes(p.StartContainer)
def start_container(ex: Executors, run: Run, op: p.StartContainer) -> None:
    if op.if_stopped_here and op.target not in run.stopped:
        return
    ex.api.start(op.target)


@executes(p.UnpauseContainer)
def unpause_container(ex: Executors, run: Run, op: p.UnpauseContainer) -> None:
    ex.api.unpause(op.target)


@executes(p.StopContainer)
def stop_container(ex: Executors, run: Run, op: p.StopContainer) -> None:
    """Stop it as it was made to stop: its own signal, then SIGKILL after the timeout."""
    try:
        info = ex.api.inspect_container(op.target)
    except docker.errors.NotFound:
        return  # already gone is done
    state = info["State"]
    if not (state["Running"] or state["Paused"] or state["Restarting"]):
        return
    if state["Paused"]:  # a paused process cannot act on its stop signal
        ex.api.unpause(op.target)
    timeout = op.timeout
    if timeout is None:
        own = info["Config"].get("StopTimeout")
        timeout = own if isinstance(own, int) and own >= 0 else 10
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.stop(op.target, timeout=timeout)
    if state["Running"]:
        run.stopped.add(op.target)


@executes(p.RenameContainer)
def rename_container(ex: Executors, run: Run, op: p.RenameContainer) -> None:
    ex.api.rename(op.target, op.to)


@executes(p.RemoveContainer)
def remove_container(ex: Executors, run: Run, op: p.RemoveContainer) -> None:
    # Never forced but for a container this change made: a container dsr removes has
    # been stopped first. v=False: volumes outlive their containers.
    with contextlib.suppress(docker.errors.NotFound):
        ex.api.remove_container(op.target, v=False, force=op.force)


@executes(p.UpdateContainer)
def update_container(ex: Executors, run: Run, op: p.UpdateContainer) -> None:
    """``docker update`` in place (no new container, no restart)."""
    policy = dockerargs.restart(op.restart) or {"Name": "no"}
    # The stubs know only always and on-failure; the engine takes every name.
    ex.api.update_container(op.target, restart_policy=policy)  # type: ignore[arg-type]


@executes(p.CreateContainer)
def create_container(ex: Executors, run: Run, op: p.CreateContainer) -> None:
    params = op.params
    wait_healthy(ex, params.wait_healthy)
    for path in params.make_dirs:
        os.makedirs(path, exist_ok=True)
    exposed, bindings = dockerargs.ports(params.ports)
    # The engine takes one network at creation (API < 1.44); the others are joined
    # before the container starts.
    first, others = (params.networks[0], params.networks[1:]) if params.networks else (None, ())
    host_config = ex.api.create_host_config(
        mounts=[dockerargs.mount(m) for m in params.mounts if not m.selinux],
        binds=[dockerargs.bind(m) for m in params.mounts if m.selinux] or None,
        volumes_from=list(params.volumes_from) or None,
        port_bindings=bindings or None,
        restart_policy=dockerargs.restart(params.restart),
        network_mode="none"
        if params.network_disabled
        else (first.network if first is not None else None),
        init=params.init or None,
        mem_limit=params.memory,
        nano_cpus=params.nano_cpus,
        shm_size=params.shm_size,
    )
    settings: dict[str, Any] = dict(
        image=params.image,
        command=list(params.command) if params.command is not None else None,
        entrypoint=list(params.entrypoint) if params.entrypoint is not None else None,
        environment=list(params.env) or None,
        ports=exposed or None,
        labels=dict(params.labels),
        working_dir=params.working_dir,
        user=params.user,
        host_config=host_config,
        network_disabled=params.network_disabled,
        stop_signal=params.stop_signal or None,
        stop_timeout=params.stop_timeout,
        networking_config=endpoints(ex, first),
        healthcheck=_health(params.healthcheck),
    )
    # As docker-py's create_container: the proxies of ~/.docker/config.json join the
    # environment (its use_config_proxy), then one create call, to the socket directly.
    proxies = getattr(ex.api, "_proxy_configs", None)
    if proxies is not None:
        settings["environment"] = proxies.inject_proxy_environment(settings["environment"]) or None
    config = ex.api.create_container_config(**settings)
    created = ex.engine.create_container(config, op.name)
    for endpoint in others:
        ex.api.connect_container_to_network(
            str(created["Id"]), endpoint.network, aliases=list(endpoint.aliases) or None
        )


def wait_healthy(ex: Executors, names: tuple[str, ...]) -> None:
    """Wait until each of ``names`` reports healthy (depends_on: service_healthy), as
    compose does before it starts a dependent; bounded by HEALTH_WAIT seconds."""
    deadline = time.monotonic() + HEALTH_WAIT
    for name in names:
        while True:
            state = ex.api.inspect_container(name)["State"]
            health = (state.get("Health") or {}).get("Status")
            if health is None:
                raise ApplyError(f"{name} has no health check, so it is never healthy")
            if health == "healthy":
                break
            if not state.get("Running") or time.monotonic() > deadline:
                raise ApplyError(
                    f"{name} is {health if state.get('Running') else 'not running'}: not "
                    f"healthy within {HEALTH_WAIT} s, so its dependents are not started"
                )
            time.sleep(0.5)


def endpoints(ex: Executors, first: EndpointParams | None) -> dict[str, Any] | None:
    if first is None:
        return None
    endpoint = ex.api.create_endpoint_config(aliases=list(first.aliases) or None)
    config: dict[str, Any] = ex.api.create_networking_config(
        {first.network: endpoint}  # type: ignore[arg-type]  # the stub says one; it is a map
    )
    return config


def _health(params: HealthParams | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {
        "test": list(params.test),
        "interval": params.interval,
        "timeout": params.timeout,
        "retries": params.retries,
        "start_period": params.start_period,
    }
