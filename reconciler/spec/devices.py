"""Which host paths a local volume mounts, and which filesystem types it must not.

The local driver passes ``type``, ``o`` and ``device`` to mount(2) in the engine's own
namespaces: ``type: none, o: bind, device: /etc`` is a bind of /etc, overlay's
``o: lowerdir=/etc`` is one in disguise, and ``type: proc`` would be the host's /proc.
"""

from __future__ import annotations

from collections.abc import Mapping

# Filesystem types whose `device` names a remote share or nothing on the host.
_NOT_HOST_DEVICES = frozenset({"nfs", "nfs4", "cifs", "smb", "smb3", "tmpfs", "ramfs", "overlay"})
# Kernel filesystems: the local driver mounts them in the engine's (the host's) namespaces,
# so `type: proc` would hand a container the host's /proc.
KERNEL_FILESYSTEMS = frozenset(
    {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "debugfs",
        "tracefs",
        "securityfs",
        "bpf",
        "configfs",
        "efivarfs",
        "fusectl",
        "mqueue",
        "hugetlbfs",
        "pstore",
        "binfmt_misc",
        "autofs",
        "rpc_pipefs",
        "nsfs",
        "selinuxfs",
    }
)
# Mount options of the local driver that name host folders (overlay's, bind's device).
_PATH_OPTIONS = ("lowerdir", "upperdir", "workdir")


def local_host_paths(driver: str, opts: Mapping[str, str]) -> list[tuple[str, str]]:
    """The host paths a local volume mounts: (driver_opts key, path). The local driver
    passes ``type``, ``o`` and ``device`` to mount(2), so ``type: none, o: bind, device:
    /etc`` is a bind of /etc, and overlay's ``o: lowerdir=/etc`` one in disguise."""
    if driver != "local":
        return []
    out = []
    device = opts.get("device")
    if device is not None and opts.get("type", "").lower() not in _NOT_HOST_DEVICES:
        out.append(("device", device))
    for option in opts.get("o", "").split(","):
        key, _, value = option.partition("=")
        if key.strip() in _PATH_OPTIONS:
            out += [("o", path) for path in value.split(":") if path]
    return out
