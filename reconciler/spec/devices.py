"""What a volume's ``driver_opts`` make the engine mount: an allow-list, not a deny-list.

The local driver passes ``type``, ``o`` and ``device`` to mount(2) in the engine's own
namespaces, so its options are host access in disguise: ``type: none, o: bind, device:
/etc`` is a bind of /etc, *any* type with ``o: bind`` is one too (the kernel ignores the
type of a bind), overlay's ``lowerdir=``, ``lowerdir+=``, ``upperdir=``, ``workdir=`` and
``datadir+=`` name host folders, and ``type: proc`` is the host's /proc. dsr therefore
knows every ``type`` and every ``o`` option it accepts and what each means:

- ``TYPES``: the filesystem types it knows, and what their ``device`` is (a host path, a
  remote share, or nothing), with the data options each takes;
- ``FLAGS``: the generic mount flags (``ro``, ``nosuid``, ``bind``...) any type takes;
- every other type, option or ``driver_opts`` key is refused unless the admin policy
  lists it (``local_types``, ``local_options``); a path option dsr cannot read exactly
  (an escaped ``\\:`` or ``\\,``) is refused whatever the policy says.

A network mount (``nfs``, ``nfs4``, ``cifs``, ``smb3``) from this host itself (a loopback
or unspecified address, ``localhost``, the host's own name) reads the host's own folders:
an NFS export path from it is checked as a host path, a CIFS share is refused (its name
says nothing of the folder it serves).

Other volume drivers interpret their options themselves: they pass only when the policy
lists the driver (``volume_drivers``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Set
from dataclasses import dataclass

# Kernel filesystems: the local driver mounts them in the engine's (the host's) namespaces,
# so `type: proc` would hand a container the host's /proc. Refused even when a policy
# lists the type.
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

# The `driver_opts` keys of the local driver (Docker refuses others itself).
LOCAL_KEYS = frozenset({"type", "o", "device", "size"})

# Generic mount(2) flags, as Docker's mount package reads them from `o`; bind and rbind
# turn any type into a bind of `device`. remount and the propagation flags are left out:
# they act on mounts that already exist.
FLAGS = frozenset(
    {
        "defaults",
        "ro",
        "rw",
        "suid",
        "nosuid",
        "dev",
        "nodev",
        "exec",
        "noexec",
        "sync",
        "async",
        "dirsync",
        "mand",
        "nomand",
        "atime",
        "noatime",
        "diratime",
        "nodiratime",
        "relatime",
        "norelatime",
        "strictatime",
        "nostrictatime",
    }
)
BIND_FLAGS = frozenset({"bind", "rbind"})

# What `device` is for a type: "host" (a host path: a block device or, for binds, a
# folder), "remote" (a share elsewhere), "none" (ignored by the kernel).
_NFS = frozenset(
    [
        "addr",
        "vers",
        "nfsvers",
        "minorversion",
        "proto",
        "port",
        "mountport",
        "mountproto",
        "mountaddr",
        "soft",
        "hard",
        "softreval",
        "nosoftreval",
        "timeo",
        "retrans",
        "rsize",
        "wsize",
        "acregmin",
        "acregmax",
        "acdirmin",
        "acdirmax",
        "actimeo",
        "ac",
        "noac",
        "cto",
        "nocto",
        "lock",
        "nolock",
        "sec",
        "sharecache",
        "nosharecache",
        "resvport",
        "noresvport",
        "lookupcache",
        "fsc",
        "nofsc",
        "local_lock",
        "nconnect",
        "clientaddr",
        "tcp",
        "udp",
        "rdma",
        "intr",
        "nointr",
        "posix",
        "noposix",
        "bg",
        "fg",
        "retry",
        "namlen",
        "rdirplus",
        "nordirplus",
    ]
)
_CIFS = frozenset(
    [
        "addr",
        "username",
        "user",
        "password",
        "pass",
        "domain",
        "dom",
        "workgroup",
        "uid",
        "gid",
        "forceuid",
        "forcegid",
        "noforceuid",
        "noforcegid",
        "file_mode",
        "dir_mode",
        "vers",
        "sec",
        "port",
        "iocharset",
        "cache",
        "nounix",
        "unix",
        "noserverino",
        "serverino",
        "mfsymlinks",
        "noperm",
        "perm",
        "nobrl",
        "seal",
        "rsize",
        "wsize",
        "actimeo",
        "echo_interval",
        "nosharesock",
        "noacl",
        "acl",
        "nocase",
        "ignorecase",
        "hard",
        "soft",
    ]
)
_BLOCK = frozenset(
    [
        "errors",
        "discard",
        "nodiscard",
        "data",
        "barrier",
        "nobarrier",
        "commit",
        "nouuid",
        "inode64",
        "inode32",
        "logbsize",
        "allocsize",
        "prjquota",
        "pquota",
        "uquota",
        "gquota",
        "usrquota",
        "grpquota",
        "quota",
        "noquota",
        "subvol",
        "subvolid",
        "compress",
        "compress-force",
        "space_cache",
        "ssd",
        "nossd",
        "autodefrag",
        "noautodefrag",
        "user_xattr",
        "nouser_xattr",
        "acl",
        "noacl",
    ]
)
TYPES: Mapping[str, tuple[str, frozenset[str]]] = {
    "none": ("host", frozenset()),
    "tmpfs": (
        "none",
        frozenset(
            [
                "size",
                "nr_blocks",
                "nr_inodes",
                "mode",
                "uid",
                "gid",
                "huge",
                "mpol",
                "inode64",
                "inode32",
            ]
        ),
    ),
    "ramfs": ("none", frozenset({"mode"})),
    "overlay": (
        "none",
        frozenset(
            [
                "lowerdir",
                "lowerdir+",
                "upperdir",
                "workdir",
                "datadir+",
                "redirect_dir",
                "index",
                "uuid",
                "nfs_export",
                "xino",
                "metacopy",
                "volatile",
                "userxattr",
                "default_permissions",
            ]
        ),
    ),
    "nfs": ("remote", _NFS),
    "nfs4": ("remote", _NFS),
    "cifs": ("remote", _CIFS),
    "smb3": ("remote", _CIFS),
    "ext2": ("host", _BLOCK),
    "ext3": ("host", _BLOCK),
    "ext4": ("host", _BLOCK),
    "xfs": ("host", _BLOCK),
    "btrfs": ("host", _BLOCK),
}
# Overlay options whose values are host folders: "lowerdir" a ":"-separated list.
PATH_OPTIONS = frozenset({"lowerdir", "lowerdir+", "upperdir", "workdir", "datadir+"})


@dataclass(frozen=True)
class Allowances:
    """What an admin policy allows beyond the allow-list."""

    drivers: Set[str] = frozenset()  # other volume drivers, options passed through
    types: Set[str] = frozenset()  # more types for the local driver
    options: Set[str] = frozenset()  # more `o` options (names, without "=value")


def _split_o(o: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for part in o.split(",") if o else []:
        key, eq, value = part.partition("=")
        out.append((key, value if eq else None))
    return out


def local_host_paths(driver: str, opts: Mapping[str, str]) -> list[tuple[str, str]]:
    """The host paths a local volume mounts: (driver_opts key, path). ``device`` when the
    type's device is a host path, when ``o`` binds, or when the type is none of dsr's
    (an admin-allowed type's absolute device is checked as a host path too); every path
    of overlay's options. Other drivers: none (their options are theirs)."""
    if driver != "local":
        return []
    out = []
    fstype = opts.get("type", "")
    options = _split_o(opts.get("o", ""))
    binds = any(key in BIND_FLAGS for key, _ in options)
    device = opts.get("device")
    kind = TYPES.get(fstype or "none", ("other", frozenset()))[0]
    if device is not None and (
        binds or kind == "host" or (kind == "other" and device.startswith("/"))
    ):
        out.append(("device", device))
    for key, value in options:
        if key in PATH_OPTIONS and value is not None:
            paths = value.split(":") if key == "lowerdir" else [value]
            out += [("o", path) for path in paths if path]
    if kind == "remote" and fstype in ("nfs", "nfs4") and device is not None:
        server, export = _nfs_server(device, options)
        if is_this_host(server):  # this host's own export: a host path in disguise
            out.append(("device", export or "/"))
    return out


def _nfs_server(device: str, options: list[tuple[str, str | None]]) -> tuple[str, str]:
    """(server, exported path) of an NFS ``device`` (``host:/path``, ``[v6]:/path`` or
    ``:/path``); the last ``addr=`` option is the server the kernel uses when given."""
    if device.startswith("["):
        host, _, rest = device[1:].partition("]")
        export = rest.removeprefix(":")
    else:
        host, _, export = device.rpartition(":") if ":" in device else ("", "", device)
    addrs = [value for key, value in options if key == "addr" and value is not None]
    return (addrs[-1] if addrs else host), export


def cifs_server(device: str, options: list[tuple[str, str | None]]) -> str:
    """The server of a CIFS ``device`` (``//host/share``); the last ``ip=``/``addr=``
    option when given (the kernel's mount.cifs uses it instead of resolving the name)."""
    addrs = [value for key, value in options if key in ("ip", "addr") and value is not None]
    return addrs[-1] if addrs else device.lstrip("/\\").split("/", 1)[0]


_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_this_host(server: str) -> bool:
    """The server is this host: a loopback or unspecified address, ``localhost``, or this
    host's own name. A network mount from it reads the host's own folders."""
    name = server.strip().strip("[]").lower().rstrip(".")
    if not name or name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return name == socket.gethostname().lower() or name == socket.getfqdn().lower()
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def volume_problems(
    driver: str, opts: Mapping[str, str], allow: Allowances
) -> list[tuple[str, str]]:
    """Why these ``driver_opts`` are refused: (driver_opts key, reason) each; the host
    paths they name are the policy's business (``local_host_paths``)."""
    if driver != "local":
        if opts and driver not in allow.drivers:
            return [
                (
                    next(iter(opts)),
                    f"the volume driver {driver!r} interprets its options itself, so dsr "
                    "cannot check what they mount; refused unless the admin policy lists "
                    "it in volume_drivers",
                )
            ]
        return []
    out = [
        (key, f"'{key}' is not an option of the local driver (it knows {_list(LOCAL_KEYS)})")
        for key in opts
        if key not in LOCAL_KEYS
    ]
    fstype = opts.get("type", "")
    known = TYPES.get(fstype or "none")
    if fstype in KERNEL_FILESYSTEMS:
        return [*out, ("type", f"'{fstype}' is a kernel filesystem; the engine would mount "
                       "the host's own, so dsr refuses it")]  # fmt: skip
    if known is None and fstype not in allow.types:
        out.append(
            (
                "type",
                f"'{fstype}' is not a filesystem type dsr knows ({_list(TYPES)}); refused "
                "unless the admin policy lists it in local_types",
            )
        )
    options = _split_o(opts.get("o", ""))
    binds = any(key in BIND_FLAGS for key, _ in options)
    passed = known is None and fstype in allow.types  # an admin's type: its options too
    data = known[1] if known is not None else frozenset()
    for key, value in options:
        if key in PATH_OPTIONS and (fstype == "overlay" or passed or key in allow.options):
            if not value or "\\" in value:
                out.append(("o", f"'{key}' names no host folder dsr can read exactly"))
        elif key in FLAGS or key in BIND_FLAGS:
            if value is not None:
                out.append(("o", f"the mount flag '{key}' takes no value"))
        elif not (key in data or key in allow.options or passed):
            out.append(
                (
                    "o",
                    f"'{key}' is not a mount option dsr knows for type "
                    f"'{fstype or 'none'}'; refused unless the admin policy lists it in "
                    "local_options",
                )
            )
    device = opts.get("device")
    if fstype in ("", "none") and (device is not None or options) and not binds:
        out.append(
            ("o", "without a type, the local driver mounts `device` only with o: bind or rbind")
        )
    if binds and device is None:
        out.append(("device", "a bind needs the host folder in `device`"))
    if (
        fstype in ("cifs", "smb3")
        and device is not None
        and is_this_host(cifs_server(device, options))
    ):
        out.append(
            (
                "device",
                "a share of this host itself: dsr cannot tell which host folder it "
                "serves, so it refuses it",
            )
        )
    host = known is not None and known[0] == "host"
    if fstype not in ("", "none") and host and device is None:
        out.append(("device", f"type '{fstype}' needs a block device in `device`"))
    return out


def _list(names: object) -> str:
    return ", ".join(sorted(n for n in names if n))  # type: ignore[attr-defined]
