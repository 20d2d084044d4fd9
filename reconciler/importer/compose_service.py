"""One compose service as a dsr container: every key carried over, or noted."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from reconciler.files import InputFileError, read_bounded
from reconciler.importer.compose_read import Written, plain, text
from reconciler.spec.base import parse_seconds
from reconciler.spec.names import port_problem
from reconciler.spec.yamlload import Loc

if TYPE_CHECKING:
    from reconciler.importer.compose import Converter

CARRIED = {
    "image", "build", "container_name", "command", "entrypoint", "environment", "env_file",
    "ports", "restart", "labels", "user", "working_dir", "init", "stop_grace_period",
    "stop_signal", "volumes", "volumes_from", "tmpfs", "networks", "network_mode",
    "healthcheck", "depends_on", "shm_size", "mem_limit", "cpus",
}  # fmt: skip
WHY = {
    "cap_add": "the contract allows no capability options in specs",
    "cap_drop": "the contract allows no capability options in specs",
    "privileged": "the contract allows no privileged containers in specs",
    "devices": "the contract allows no device options in specs",
    "pid": "the contract allows no host-namespace options in specs",
    "ipc": "the contract allows no host-namespace options in specs",
    "userns_mode": "the contract allows no host-namespace options in specs",
    "security_opt": "the contract allows no security options in specs",
    "deploy": "dsr has no replicas or placement; deploy.resources.limits memory and cpus "
    "are carried over",
    "memswap_limit": "dsr has no resource limits",
    "mem_reservation": "dsr has no resource limits",
    "cpu_shares": "dsr has no resource limits",
    "scale": "dsr makes one container per spec entry",
}
KNOWN = CARRIED | set(WHY) | {
    "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "cpu_count",
    "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpuset",
    "credential_spec", "develop", "device_cgroup_rules", "dns", "dns_opt", "dns_search",
    "domainname", "driver_opts", "expose", "extends", "external_links", "extra_hosts",
    "gpus", "group_add", "hostname", "isolation", "label_file", "links", "logging",
    "mac_address", "mem_swappiness", "models", "oom_kill_disable", "oom_score_adj",
    "pids_limit", "platform", "post_start", "pre_stop", "profiles", "provider",
    "pull_policy", "read_only", "runtime", "secrets", "configs", "stdin_open", "storage_opt",
    "sysctls", "tty", "ulimits", "use_api_socket", "uts", "volume_driver", "stop_timeout",
}  # fmt: skip
_SIZE = re.compile(r"([0-9]+)\s*([kmgt]?)b?", re.IGNORECASE)


def convert_service(converter: Converter, service: str, spec: dict[str, Any]) -> None:
    loc: Loc = ("services", service)
    name = converter.container_names[service]
    out: dict[str, Any] = {"image": image_of(converter, service, spec), "adopt": True}
    for key in spec:
        if key not in KNOWN and not str(key).startswith("x-"):
            converter.error((*loc, key), f"unknown key '{key}' of a compose service")
        elif key not in CARRIED and not str(key).startswith("x-"):
            converter.note((*loc, key), WHY.get(key, "dsr containers have no such setting"))
    from reconciler.importer.compose import labels_of, split_command

    for key in ("command", "entrypoint"):
        if key in spec:
            value = split_command(converter, (*loc, key), spec[key])
            if value is not None:
                out[key] = value
    env = environment(converter, loc, spec)
    if env:
        out["env"] = env
    ports = [p for i, item in enumerate(spec.get("ports") or []) if (p := port(converter, (*loc, "ports", i), item))]  # fmt: skip
    if ports:
        out["ports"] = ports
    for key in ("restart", "user", "working_dir", "stop_signal"):
        if spec.get(key) is not None:
            out[key] = text(spec[key])
    labels = labels_of(converter, (*loc, "labels"), spec.get("labels"))
    if labels:
        out["labels"] = labels
    if plain(spec.get("init")) in (True, "true"):
        out["init"] = True
    if spec.get("stop_grace_period") is not None:
        grace = stop_grace(converter, (*loc, "stop_grace_period"), spec["stop_grace_period"])
        if grace is not None:
            out["stop_timeout"] = grace
    mounts = [m for i, item in enumerate(spec.get("volumes") or []) if (m := mount(converter, (*loc, "volumes", i), item))]  # fmt: skip
    mounts += tmpfs_mounts(converter, (*loc, "tmpfs"), spec.get("tmpfs"))
    if mounts:
        out["mounts"] = mounts
    sources = volumes_from(converter, (*loc, "volumes_from"), spec.get("volumes_from") or [])
    if sources:
        out["volumes_from"] = sources
    networks = networks_of(converter, service, loc, spec)
    if networks:
        out["networks"] = networks
    runtime(converter, loc, spec, out)
    converter.out.containers[name] = out


def runtime(converter: Converter, loc: Loc, spec: dict[str, Any], out: dict[str, Any]) -> None:
    """Health check, start order and limits."""
    check = spec.get("healthcheck")
    if isinstance(check, dict) and plain(check.get("disable")) not in (True, "true"):
        test = check.get("test")
        test = [text(t) for t in test] if isinstance(test, list) else text(test)
        if isinstance(test, list) and test[:1] == ["NONE"]:
            pass
        elif test:
            health: dict[str, Any] = {"test": test}
            for key in ("interval", "timeout", "start_period"):
                if check.get(key) is not None:
                    seconds = stop_grace(converter, (*loc, "healthcheck", key), check[key])
                    if seconds:
                        health[key] = seconds
            if plain(check.get("retries")) is not None:
                health["retries"] = plain(check["retries"])
            for extra in sorted(set(check) - {"test", "interval", "timeout", "start_period", "retries", "disable"}):  # fmt: skip
                converter.note(
                    (*loc, "healthcheck", extra), "dsr health checks have no such setting"
                )
            out["healthcheck"] = health
    depends = spec.get("depends_on")
    if depends:
        names = depends if isinstance(depends, list) else list(depends)
        order: dict[str, Any] = {}
        for service in names:
            service = text(service)
            if service not in converter.container_names:
                converter.error(
                    (*loc, "depends_on", service), f"service '{service}' is not defined"
                )
                continue
            entry = depends.get(service) if isinstance(depends, dict) else None
            condition = text((entry or {}).get("condition") or "service_started")
            if condition == "service_completed_successfully":
                converter.note((*loc, "depends_on", service), "condition "
                               "service_completed_successfully: dsr keeps every container "
                               "running and never waits for one to finish, so this start "
                               "order is left out")  # fmt: skip
                continue
            if condition not in ("service_started", "service_healthy"):
                converter.error((*loc, "depends_on", service, "condition"),
                                f"unknown condition '{condition}'")  # fmt: skip
                continue
            target = converter.container_names[service]
            order[target] = {"condition": condition} if condition != "service_started" else {}
        if order:
            out["depends_on"] = order
    limits = ((spec.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    for key, field, value in (("mem_limit", "memory", spec.get("mem_limit")),
                              ("cpus", "cpus", spec.get("cpus")),
                              ("shm_size", "shm_size", spec.get("shm_size")),
                              ("deploy", "memory", limits.get("memory")),
                              ("deploy", "cpus", limits.get("cpus"))):  # fmt: skip
        if value is None or field in out:
            continue
        if field == "cpus":
            try:
                out[field] = float(plain(value) if not isinstance(value, str) else value)
            except (TypeError, ValueError):
                converter.note((*loc, key), f"'{value}' is not a number of CPUs")
            continue
        size = size_bytes(value)
        if size:
            out[field] = size
        else:
            converter.note((*loc, key), f"'{text(value)}' is not a size")


def image_of(converter: Converter, service: str, spec: dict[str, Any]) -> str:
    if "build" in spec:
        built = text(spec["image"]) if spec.get("image") else converter.built_image(service)
        converter.note(
            ("services", service, "build"),
            f"dsr does not build it: the spec uses the image compose built, {built}",
        )
        return built
    return text(spec["image"])


def environment(converter: Converter, loc: Loc, spec: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    files = spec.get("env_file")
    entries = files if isinstance(files, list) else [files] if files is not None else []
    for index, entry in enumerate(entries):
        where = (*loc, "env_file", index) if isinstance(files, list) else (*loc, "env_file")
        required = True
        if isinstance(entry, dict):
            required = plain(entry.get("required", True)) not in (False, "false")
            entry = entry.get("path")
        if isinstance(entry, Written):
            converter.note(where, "a file named with ${VAR} cannot be read here")
            continue
        env.update(read_env_file(converter, where, converter.path(str(entry)), required))
    value = spec.get("environment")
    if isinstance(value, dict):
        for key, val in value.items():
            env[str(key)] = "${" + str(key) + "}" if val is None else text(val)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            key, sep, val = text(item).partition("=")
            if not key:
                converter.error((*loc, "environment", index), f"'{item}' is not KEY=VALUE")
            env[key] = val if sep else "${" + key + "}"
    elif value is not None:
        converter.error((*loc, "environment"), "environment must be a mapping or a list")
    return env


def read_env_file(converter: Converter, loc: Loc, path: str, required: bool) -> dict[str, str]:
    """``KEY=VALUE`` lines as compose reads them (# comments, optional quotes); the values
    are literal (a ``$`` stays a ``$``)."""
    try:  # a regular file only (a FIFO would hang the import), of at most 1 MiB
        lines = read_bounded(path, 1 << 20).decode("utf-8").splitlines()
    except (OSError, InputFileError, UnicodeDecodeError) as err:
        if required:
            converter.error(loc, f"cannot read the env_file {path}: {err}")
        return {}
    out = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, val = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep:
            out[key] = "${" + key + "}"
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] and val[0] in "'\"":
            val = val[1:-1]
        else:
            val = val.split(" #", 1)[0].rstrip()
        out[key] = val.replace("$", "$$")
    return out


def port(converter: Converter, loc: Loc, item: Any) -> str | None:
    if isinstance(item, dict):
        # mode (host or ingress) is swarm's: a single engine publishes on the host anyway.
        for extra in sorted(set(item) - {"target", "published", "host_ip", "protocol", "mode"}):
            converter.note((*loc, extra), "dsr ports have no such setting")
        target = text(item.get("target"))
        published = text(item.get("published")) if item.get("published") is not None else ""
        host_ip = text(item.get("host_ip")) if item.get("host_ip") else ""
        proto = text(item.get("protocol")) if item.get("protocol") else ""
        value = ":".join(p for p in (host_ip, published) if p)
        value = f"{value}:{target}" if value else target
        value += f"/{proto}" if proto else ""
    else:
        value = text(item)
    if isinstance(item, Written) or "$" in value:
        return value
    problem = port_problem(value)
    if problem:
        converter.note(loc, problem)
        return None
    return value


def stop_grace(converter: Converter, loc: Loc, value: Any) -> int | None:
    raw = plain(value)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    written = text(value)
    try:
        match = re.fullmatch(r"([0-9.]+)(ms|s)?", written)
        if match and match.group(2) == "ms":
            return max(1, round(float(match.group(1)) / 1000))
        return parse_seconds(written) if not written.isdigit() else int(written)
    except ValueError as err:
        converter.note(loc, str(err))
        return None


def size_bytes(value: Any) -> int | None:
    raw = plain(value)
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    match = _SIZE.fullmatch(str(raw).strip())
    if not match:
        return None
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    return int(match.group(1)) * scale[match.group(2).lower()]


def mount(converter: Converter, loc: Loc, item: Any) -> dict[str, Any] | None:
    if isinstance(item, dict):
        return long_mount(converter, loc, item)
    value = text(item)
    parts = value.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    if len(parts) > 3:
        converter.error(loc, f"'{value}' is not SOURCE:TARGET[:MODE]")
        return None
    source, target = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    out: dict[str, Any] = {"type": "volume", "target": target}
    if source.startswith(("/", ".", "~", "$")):
        out.update(type="bind", source=converter.path(source))
        if converter.refused(loc, out["source"]):
            return None
        if can_create(out["source"]):
            out["create"] = True  # compose makes a missing folder for the short syntax
    else:
        named = converter.volume_names.get(source)
        if named is None:
            converter.error(loc, f"volume '{source}' is not defined in the top-level volumes")
            return None
        out["source"] = named
    for mode in modes:
        if mode == "ro":
            out["read_only"] = True
        elif mode in ("z", "Z"):
            out["selinux"] = mode
        elif mode == "nocopy" and out["type"] == "volume":
            out["nocopy"] = True
        elif mode in ("shared", "rshared", "slave", "rslave", "private", "rprivate"):
            if out["type"] == "bind":
                out["propagation"] = mode
        elif mode != "rw":
            converter.note(loc, f"the mount option {mode} has no dsr equivalent")
    return out


def can_create(path: str) -> bool:
    """compose creates a missing bind source folder; dsr does so with ``create: true``,
    which a file never needs (and ${VAR} paths cannot be judged here)."""
    return "$" not in path and not path.startswith("~") and not os.path.isfile(path)


def long_mount(converter: Converter, loc: Loc, item: dict[str, Any]) -> dict[str, Any] | None:
    kind = text(item.get("type") or "volume")
    if kind not in ("volume", "bind", "tmpfs"):
        converter.note(loc, f"dsr has no {kind} mounts")
        return None
    out: dict[str, Any] = {"type": kind, "target": text(item.get("target"))}
    source = text(item["source"]) if item.get("source") else ""
    if kind == "volume" and source:
        named = converter.volume_names.get(source)
        if named is None:
            converter.error((*loc, "source"), f"volume '{source}' is not defined")
            return None
        out["source"] = named
    elif kind == "bind":
        out["source"] = converter.path(source)
        if converter.refused(loc, out["source"]):
            return None
        bind = item.get("bind") or {}
        if plain(bind.get("create_host_path", True)) not in (False, "false") and can_create(out["source"]):  # fmt: skip
            out["create"] = True
        if bind.get("propagation"):
            out["propagation"] = text(bind["propagation"])
        if bind.get("selinux"):
            out["selinux"] = text(bind["selinux"])
    elif kind == "tmpfs":
        size = (item.get("tmpfs") or {}).get("size")
        if size is not None and size_bytes(size):
            out["tmpfs_size"] = size_bytes(size)
    if plain(item.get("read_only")) in (True, "true"):
        out["read_only"] = True
    if kind == "volume" and plain((item.get("volume") or {}).get("nocopy")) in (True, "true"):
        out["nocopy"] = True
    for extra in sorted(set(item) - {"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "consistency"}):  # fmt: skip
        converter.note((*loc, extra), "dsr mounts have no such setting")
    return out


def tmpfs_mounts(converter: Converter, loc: Loc, value: Any) -> list[dict[str, Any]]:
    items = value if isinstance(value, list) else [value] if value is not None else []
    out = []
    for index, item in enumerate(items):
        target, _, options = text(item).partition(":")
        mount_spec: dict[str, Any] = {"type": "tmpfs", "target": target}
        for option in filter(None, options.split(",")):
            key, _, val = option.partition("=")
            if key == "size" and size_bytes(val):
                mount_spec["tmpfs_size"] = size_bytes(val)
            else:
                where = (*loc, index) if isinstance(value, list) else loc
                converter.note(where, f"the tmpfs option {option} has no dsr equivalent")
        out.append(mount_spec)
    return out


def volumes_from(converter: Converter, loc: Loc, items: list[Any]) -> list[str]:
    out = []
    for index, item in enumerate(items):
        value = text(item)
        if value.startswith("container:"):
            value = value.removeprefix("container:")
            name, _, mode = value.partition(":")
            converter.note((*loc, index), f"{name} is not a service: add it to the spec (dsr "
                           "import engine writes one) for this reference to resolve")  # fmt: skip
        else:
            # ``service:NAME`` is how docker-compose 1.x's ``config`` writes a service.
            service, _, mode = value.removeprefix("service:").partition(":")
            if service not in converter.container_names:
                converter.error((*loc, index), f"service '{service}' is not defined")
                continue
            name = converter.container_names[service]
        out.append(f"{name}:{mode}" if mode in ("ro", "rw") else name)
    return out


def networks_of(converter: Converter, service: str, loc: Loc, spec: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    mode = text(spec["network_mode"]) if spec.get("network_mode") else ""
    if mode:
        if mode != "bridge":
            converter.note((*loc, "network_mode"), f"{mode}: the contract allows no "
                           "host-namespace options, and dsr joins only its own networks")  # fmt: skip
        return {}
    value = spec.get("networks")
    if value is None:
        return {converter.default_network(): {"aliases": [service]}}
    keys = value if isinstance(value, list) else list(value) if isinstance(value, dict) else []
    out: dict[str, Any] = {}
    for key in keys:
        key = text(key)
        if key == "default":
            name: str | None = converter.default_network()
        elif key not in converter.network_names:
            converter.error((*loc, "networks", key), f"network '{key}' is not defined")
            continue
        else:
            name = converter.network_names[key]
        if not name:
            continue
        aliases = [service]
        entry = value.get(key) if isinstance(value, dict) else None
        for extra in sorted(set(entry or {}) - {"aliases"}):
            converter.note((*loc, "networks", key, extra), "dsr networks have no such setting")
        aliases += [text(a) for a in (entry or {}).get("aliases") or [] if text(a) != service]
        out[name] = {"aliases": aliases}
    return out
