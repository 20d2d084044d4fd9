"""The short mount form, read exactly as ``docker -v`` reads it.

``SOURCE:TARGET[:OPTIONS]`` or ``TARGET`` alone. A SOURCE starting with ``/``, ``.`` or
``~`` is a host path (a bind); any other is a key of ``volumes``. OPTIONS are
comma-separated ``ro``, ``rw``, ``nocopy``, ``z``, ``Z`` and the propagation modes.
"""

from __future__ import annotations

from typing import Any

PROPAGATION = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_OPTIONS = ("ro", "rw", "nocopy", "z", "Z", *PROPAGATION)


def is_host_path(source: str) -> bool:
    """A source that names a host path rather than a volume key."""
    return source.startswith(("/", ".", "~"))


def parse_short(text: str) -> dict[str, Any]:
    """Turn ``docker -v`` text into the long form's mapping; ``ValueError`` says what is off."""
    parts = text.split(":")
    if any(part == "" for part in parts):
        raise ValueError(f"'{text}': empty section in a short mount (SOURCE:TARGET[:OPTIONS])")
    if len(parts) > 3:
        raise ValueError(f"'{text}': too many ':' in a short mount (SOURCE:TARGET[:OPTIONS])")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    mount: dict[str, Any] = {
        "type": "bind" if is_host_path(source) else "volume",
        "source": source,
        "target": target,
    }
    if len(parts) == 3:
        mount.update(_options(text, parts[2], mount["type"]))
    return mount


def _options(text: str, options: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for option in options.split(","):
        if option not in _OPTIONS:
            raise ValueError(
                f"'{text}': unknown mount option '{option}' (expected {', '.join(_OPTIONS)})"
            )
        if option in seen:
            raise ValueError(f"'{text}': mount option '{option}' is given twice")
        seen.add(option)
        if option in ("ro", "rw"):
            if "read_only" in out:
                raise ValueError(f"'{text}': 'ro' and 'rw' cannot both be given")
            out["read_only"] = option == "ro"
        elif option == "nocopy":
            out["nocopy"] = True
        elif option in ("z", "Z"):
            if "selinux" in out:
                raise ValueError(f"'{text}': 'z' and 'Z' cannot both be given")
            out["selinux"] = option
        else:
            if "propagation" in out:
                raise ValueError(f"'{text}': only one propagation mode may be given")
            out["propagation"] = option
    if kind == "volume" and "propagation" in out:
        raise ValueError(f"'{text}': propagation applies to bind mounts only")
    if kind == "bind" and out.get("nocopy"):
        raise ValueError(f"'{text}': nocopy applies to volumes only")
    return out
