"""Reasons are for people: say what differs in words a Docker user understands."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.plan.model import ContainerParams
from reconciler.plan.params import stop_timeout
from reconciler.snapshot import LiveContainer


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def still(names: list[str]) -> str:
    """``a still uses``, ``a, b still use``: the verb agrees with how many containers there are."""
    return f"{', '.join(names)} still {'uses' if len(names) == 1 else 'use'}"


def human_seconds(seconds: int) -> str:
    """``10 s``, ``1 min 30 s``, ``2 h``."""
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs else "")
    return " ".join(p for p in parts if p)


def writable_layer(size: int | None) -> str:
    if size is None:
        return "its writable layer was not measured"
    if size == 0:
        return "its writable layer is empty"
    return f"its writable layer holds {human_size(size)}, which goes with it"


def _mode(mount: dict[str, Any]) -> str:
    return "read-only" if mount.get("read_only") else "read-write"


def _describe_mount(mount: dict[str, Any]) -> str:
    source = mount.get("source") or ("an anonymous volume" if mount["type"] == "volume" else "")
    return f"{mount['type']} {source}".strip()


def _by_target(mounts: Any) -> dict[str, dict[str, Any]]:
    """Mounts by target; what is not a list of mappings (a stored label is input) is none."""
    if not isinstance(mounts, list):
        return {}
    return {
        str(m.get("target")): {"type": "", **m}
        for m in mounts
        if isinstance(m, dict) and m.get("target") is not None
    }


def mount_differences(old: Any, new: Any) -> list[str]:
    """``/data was read-write, spec says read-only`` and the like, by target."""
    before = _by_target(old)
    after = _by_target(new)
    out = []
    for target in sorted(before.keys() | after.keys()):
        was, now = before.get(target), after.get(target)
        if was is None and now is not None:
            out.append(f"{target} is new ({_describe_mount(now)})")
        elif now is None and was is not None:
            out.append(f"{target} is no longer mounted")
        elif was is not None and now is not None and was != now:
            if (was["type"], was.get("source")) != (now["type"], now.get("source")):
                out.append(f"{target} was {_describe_mount(was)}, spec says {_describe_mount(now)}")
            elif was.get("read_only") != now.get("read_only"):
                out.append(f"{target} was {_mode(was)}, spec says {_mode(now)}")
            else:
                changed = sorted(k for k in was.keys() | now.keys() if was.get(k) != now.get(k))
                out.append(f"{target}: {', '.join(changed)} changed")
    return out


def spec_differences(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """One sentence saying which fields of a container's spec changed."""
    if old is None:
        return "its configuration changed"
    parts = []
    for key in sorted(old.keys() | new.keys()):
        was, now = old.get(key), new.get(key)
        if was == now:
            continue
        if key == "mounts":
            parts.append("mounts differ: " + "; ".join(mount_differences(was or [], now or [])))
        elif key == "image":
            parts.append(f"image was {was}, spec says {now}")
        elif key == "env":
            was_env = was if isinstance(was, dict) else {}
            now_env = now if isinstance(now, dict) else {}
            names = sorted(
                str(k) for k in was_env.keys() | now_env.keys() if was_env.get(k) != now_env.get(k)
            )
            parts.append(f"env {', '.join(names) or 'values'} changed")
        elif key == "volumes_from":
            parts.append(f"volumes_from was {_names(was)}, spec says {_names(now)}")
        else:
            parts.append(f"{key} was {was!r}, spec says {now!r}")
    return "; ".join(parts) or "its configuration changed"


def _names(items: Any) -> str:
    if not items or not isinstance(items, list):
        return "none"
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(str(item))
            continue
        mode = item.get("read_only")
        out.append(str(item.get("name")) + ("" if mode is None else (":ro" if mode else ":rw")))
    return ", ".join(out)


def describe_changes(old: Mapping[str, str] | None, new: Mapping[str, str]) -> str:
    """``2 files changed (index.html, a.css), 1 added`` between two manifests."""
    if old is None:
        return "its context changed"
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    parts = []
    for verb, names in (("changed", changed), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            noun = "entry" if len(names) == 1 else "entries"
            parts.append(f"{len(names)} {noun} {verb} ({shown})")
    return ", ".join(parts) or "its build settings changed"


def stopping(live: LiveContainer) -> str:
    """How long stopping ``live`` may take, when it runs: a plan should not surprise."""
    if live.state not in ("running", "restarting", "paused"):
        return ""
    return f"; stopping it may take up to {human_seconds(stop_timeout(live))}"


def replace_downtime(live: LiveContainer, params: ContainerParams) -> str:
    """What a replace of ``live`` costs its users: nothing when it does not run."""
    if live.state not in ("running", "restarting", "paused"):
        return ""
    if not params.start:
        return "it stops, and its replacement is only created (state: created)"
    return (
        f"from the old container's stop (up to {human_seconds(stop_timeout(live))}) until "
        "the new one starts"
    )
