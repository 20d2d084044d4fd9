"""Issue 17, class 1: the local driver's options are an allow-list. Every case names the
driver, its options and what dsr answers: accepted (``[]``), or the driver_opts keys and a
piece of each refusal. Host paths inside options go through the one host-path policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.spec.devices import Allowances
from reconciler.spec.policy import Policy, through_proc

ETC = "/etc is under the protected /etc"
OPTION = "is not a mount option dsr knows"

CASES: list[tuple[str, str, dict[str, str], list[tuple[str, str]]]] = [
    ("plain", "local", {}, []),
    ("tmpfs", "local", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,uid=1000"}, []),
    ("tmpfs-bind", "local", {"type": "tmpfs", "o": "bind", "device": "/etc"}, [("device", ETC)]),
    ("tmpfs-rbind-ro", "local", {"type": "tmpfs", "o": "ro,rbind", "device": "/etc"}, [("device", ETC)]),
    ("nfs-bind", "local", {"type": "nfs", "o": "addr=1.2.3.4,bind", "device": "/etc"}, [("device", ETC)]),
    ("nfs", "local", {"type": "nfs", "o": "addr=10.0.0.1,rw,nfsvers=4", "device": ":/export"}, []),
    ("cifs-bind", "local", {"type": "cifs", "o": "bind", "device": "/etc/ssl"}, [("device", "protected /etc")]),
    ("cifs-credentials", "local", {"type": "cifs", "o": "credentials=/root/c", "device": "//h/s"}, [("o", OPTION)]),
    ("overlay-lowerdir", "local", {"type": "overlay", "device": "overlay", "o": "lowerdir=/srv:/etc"}, [("o", ETC)]),
    ("overlay-lowerdir+", "local", {"type": "overlay", "device": "overlay", "o": "lowerdir+=/etc"}, [("o", ETC)]),
    ("overlay-datadir+", "local", {"type": "overlay", "device": "overlay", "o": "datadir+=/etc"}, [("o", ETC)]),
    ("overlay-escaped", "local", {"type": "overlay", "device": "o", "o": "lowerdir=/srv\\:x"}, [("o", "no host folder"), ("o", "'x' must be an absolute")]),
    ("overlay-workdir-rel", "local", {"type": "overlay", "device": "o", "o": "workdir=etc"}, [("o", "absolute")]),
    ("space-in-key", "local", {"type": "overlay", "device": "o", "o": " lowerdir=/etc"}, [("o", OPTION)]),
    ("upper-case-type", "local", {"type": "TMPFS", "device": "tmpfs"}, [("type", "not a filesystem type")]),
    ("kernel-fs", "local", {"type": "sysfs", "device": "sysfs"}, [("type", "kernel filesystem")]),
    ("unknown-key", "local", {"type": "tmpfs", "device": "tmpfs", "mountpoint": "/x"}, [("mountpoint", "not an option")]),
    ("remount", "local", {"type": "tmpfs", "device": "tmpfs", "o": "remount"}, [("o", OPTION)]),
    ("shared", "local", {"type": "tmpfs", "device": "tmpfs", "o": "rshared"}, [("o", OPTION)]),
    ("flag-with-value", "local", {"type": "tmpfs", "device": "tmpfs", "o": "ro=1"}, [("o", "takes no value")]),
    ("none-without-bind", "local", {"type": "none", "device": "/srv"}, [("o", "only with o: bind")]),
    ("no-type-bind", "local", {"o": "bind", "device": "/etc"}, [("device", ETC)]),
    ("bind-no-device", "local", {"type": "none", "o": "bind"}, [("device", "needs the host folder")]),
    ("proc-self-cwd", "local", {"type": "none", "o": "bind", "device": "/proc/self/cwd"}, [("device", "passes through /proc/self")]),
    ("proc-pid-root", "local", {"type": "none", "o": "bind", "device": "/proc/1/root/etc"}, [("device", "passes through /proc/1")]),
    ("proc-thread-self", "local", {"type": "none", "o": "bind", "device": "/proc/thread-self/cwd"}, [("device", "/proc/thread-self")]),
    ("ext4-dev", "local", {"type": "ext4", "device": "/dev/sda1"}, [("device", "protected /dev")]),
    ("ext4-no-device", "local", {"type": "ext4"}, [("device", "needs a block device")]),
    # round two: spellings, duplicates, `//`, `/.`, /dev/fd, network mounts of this host
    ("bind-upper-case", "local", {"type": "none", "o": "BIND", "device": "/etc"}, [("o", OPTION), ("o", "only with o: bind"), ("device", ETC)]),
    ("bind-spaced", "local", {"type": "none", "o": " bind ", "device": "/etc"}, [("o", OPTION), ("o", "only with o: bind"), ("device", ETC)]),
    ("bind-twice", "local", {"type": "none", "o": "bind,bind", "device": "/etc"}, [("device", ETC)]),
    ("bind-empty-part", "local", {"type": "none", "o": "ro,,bind", "device": "/etc"}, [("o", OPTION), ("device", ETC)]),
    ("bind-zero-width", "local", {"type": "none", "o": "bind\u200b", "device": "/etc"}, [("o", OPTION), ("o", "only with o: bind"), ("device", ETC)]),
    ("device-double-slash", "local", {"type": "none", "o": "bind", "device": "//etc"}, [("device", "resolves to /etc")]),
    ("device-trailing-dot", "local", {"type": "none", "o": "bind", "device": "/etc/."}, [("device", "resolves to /etc")]),
    ("device-dotdot", "local", {"type": "none", "o": "bind", "device": "/srv/../etc"}, [("device", "resolves to /etc")]),
    ("device-dev-fd", "local", {"type": "none", "o": "bind", "device": "/dev/fd/3"}, [("device", "passes through /proc/self")]),
    ("device-docker-sock", "local", {"type": "none", "o": "bind", "device": "/var/run/docker.sock"}, [("device", "Docker socket")]),
    ("nfs-loopback", "local", {"type": "nfs", "o": "addr=127.0.0.1,nolock", "device": ":/etc"}, [("device", ETC)]),
    ("nfs-localhost", "local", {"type": "nfs", "device": "localhost:/etc"}, [("device", ETC)]),
    ("nfs4-v6-loopback", "local", {"type": "nfs4", "device": "[::1]:/etc"}, [("device", ETC)]),
    ("nfs-v4-mapped", "local", {"type": "nfs", "o": "addr=::ffff:127.0.0.1", "device": ":/"}, [("device", "host's root")]),
    ("nfs-addr-wins", "local", {"type": "nfs", "o": "addr=127.0.0.1", "device": "far.example:/etc"}, [("device", ETC)]),
    ("cifs-loopback", "local", {"type": "cifs", "o": "addr=127.0.0.1,username=x", "device": "//s/share"}, [("device", "this host itself")]),
    ("cifs-localhost", "local", {"type": "smb3", "device": "//localhost/share"}, [("device", "this host itself")]),
    ("cifs-remote", "local", {"type": "cifs", "device": "//files.example/share"}, []),
    ("other-driver", "rexray", {"size": "10"}, [("size", "volume_drivers")]),
    ("other-driver-no-opts", "rexray", {}, []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("driver", "opts", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_volume_options_are_an_allow_list(
    driver: str, opts: dict[str, str], expected: list[tuple[str, str]], tmp_path: Path
) -> None:
    got = Policy(state_dir=str(tmp_path / "state")).volume_problems(driver, opts)
    assert len(got) == len(expected), got
    for (key, why), (want_key, want) in zip(got, expected, strict=True):
        assert key == want_key and want in why, (got, expected)


def test_the_admin_policy_allows_types_options_and_drivers(tmp_path: Path) -> None:
    allow = Allowances(drivers={"rexray"}, types={"zfs"}, options={"rshared"})
    policy = Policy(state_dir=str(tmp_path / "state"), allowances=allow)
    assert policy.volume_problems("rexray", {"size": "10"}) == []
    assert policy.volume_problems("local", {"type": "zfs", "device": "tank/a", "o": "x=1"}) == []
    assert policy.volume_problems("local", {"type": "tmpfs", "device": "t", "o": "rshared"}) == []
    # an allowed type still binds nothing the host-path policy refuses
    refused = policy.volume_problems("local", {"type": "zfs", "device": "/etc/zfs"})
    assert refused and "protected /etc" in refused[0][1]
    refused = policy.volume_problems("local", {"type": "zfs", "o": "bind", "device": "/root"})
    assert refused and "/root" in refused[0][1]


def test_a_link_into_proc_self_is_found_however_it_is_reached(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("/proc/self")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "rel").symlink_to("../" * 20 + "proc/1")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert through_proc(str(tmp_path / "a" / "cwd")) == "/proc/self"
    assert through_proc(str(tmp_path / "b" / "root" / "etc")) == "/proc/self"
    assert through_proc(str(tmp_path / "rel" / "root")) == "/proc/1"
    assert through_proc("/proc/../proc/self/cwd") == "/proc/self"
    assert through_proc(str(tmp_path / "loop")) is None
    assert through_proc("/proc/cpuinfo") is None  # /proc itself: the protected list's
    assert through_proc(str(tmp_path)) is None
    assert Policy(state_dir=str(tmp_path / "s")).check(str(tmp_path / "b" / "cwd")) is not None
    assert os.path.realpath(str(tmp_path / "b" / "cwd")) == os.getcwd()  # why it matters


def test_the_policy_file_lists_allowances(tmp_path: Path) -> None:
    from reconciler.errors import PolicyError
    from reconciler.spec.policy import load_policy

    file = tmp_path / "policy.yaml"
    file.write_text("volume_drivers: [rexray]\nlocal_types: [zfs]\nlocal_options: [rshared]\n")
    policy = load_policy(str(file), state_dir=str(tmp_path / "s"))
    assert policy.allowances == Allowances(
        frozenset({"rexray"}), frozenset({"zfs"}), frozenset({"rshared"})
    )
    file.write_text("local_types: ['zfs,bind']\n")
    with pytest.raises(PolicyError, match="is not a driver, type or option name"):
        load_policy(str(file), state_dir=str(tmp_path / "s"))
