"""Class 6 of issue 8: files that never end. Each case runs ``dsr validate`` as a process
with a timeout and must be refused as ``FILE:LINE: message`` within 2 s, with no traceback
and nothing changed on the host."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.files import MAX_INPUT_BYTES

LIMIT_S = 2.0


def snapshot(root: Path) -> dict[str, tuple[bool, int]]:
    return {str(p.relative_to(root)): (p.is_dir(), p.lstat().st_size) for p in root.rglob("*")}


def start_up() -> float:
    """What starting ``dsr`` costs on this machine (loaded CI runners take over a second):
    the 2 s bound is on the work, not on the interpreter."""
    if not _START_UP:
        for _ in range(2):
            begin = time.perf_counter()
            subprocess.run([sys.executable, "-m", "reconciler", "--version"], capture_output=True)
            _START_UP.append(time.perf_counter() - begin)
    return min(_START_UP)


_START_UP: list[float] = []


BIG = "a" * 100_000  # an environment value; the expansion-bomb case uses it 150,000 times


def validate(cwd: Path, *args: str) -> tuple[int, str, float]:
    """Exit code, output and the seconds taken beyond start-up."""
    base = start_up()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=LIMIT_S * 5,  # a hang fails here rather than blocking the suite
        env={**os.environ, "DSR_STATE_DIR": str(cwd / "state"), "BIG": BIG},
    )
    return done.returncode, done.stdout + done.stderr, time.perf_counter() - start - base


def bomb(levels: int = 9) -> str:
    lines = ["version: 1", 'x-a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        refs = ",".join([f"*a{n - 1}"] * 9)
        lines.append(f"x-a{n}: &a{n} [{refs}]")
    return "\n".join(lines) + "\n"


def _fifo(root: Path) -> None:
    os.mkfifo(root / "specs" / "x.yaml")


def _zero_link(root: Path) -> None:
    (root / "specs" / "z.yaml").symlink_to("/dev/zero")


def _urandom_link(root: Path) -> None:
    (root / "specs" / "r.yml").symlink_to("/dev/urandom")


def _fifo_link(root: Path) -> None:  # git stores links: one to a FIFO outside the specs
    os.mkfifo(root / "fifo")
    (root / "specs" / "f.yaml").symlink_to("../fifo")


def _huge(root: Path) -> None:
    (root / "specs" / "big.yaml").write_text("version: 1\n" + "#" * MAX_INPUT_BYTES)


def _sparse(root: Path) -> None:  # large, but costs no disk
    with open(root / "specs" / "sparse.yaml", "wb") as handle:
        handle.truncate(1 << 34)


def _bomb(root: Path) -> None:
    (root / "specs" / "bomb.yaml").write_text(bomb())


def _merge_bomb(root: Path) -> None:
    lines = ["version: 1", "x-m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8}"]
    for n in range(1, 9):
        keys = ", ".join(f"k{i}: *m{n - 1}" for i in range(8))
        lines.append(f"x-m{n}: &m{n} {{{keys}}}")
    (root / "specs" / "merge.yaml").write_text("\n".join(lines) + "\n")


def _deep_flow(root: Path) -> None:
    (root / "specs" / "deep.yaml").write_text("version: 1\nx-d: " + "[" * 990 + "]" * 990 + "\n")


def _deep_block(root: Path) -> None:
    text = "version: 1\nx-d:\n" + "".join(" " * n + "- \n" for n in range(1, 200))
    (root / "specs" / "deep.yaml").write_text(text)


def _deep_mapping(root: Path) -> None:
    text = "version: 1\nx-d: " + "{a: " * 500 + "1" + "}" * 500 + "\n"
    (root / "specs" / "deep.yaml").write_text(text)


def _dockerignore_fifo(root: Path) -> None:
    (root / "specs" / "ctx").mkdir()
    os.mkfifo(root / "specs" / "ctx" / ".dockerignore")
    (root / "specs" / "img.yaml").write_text(
        "version: 1\nimages:\n  site:\n    context: ./ctx\n    path: /srv\n"
    )


def _dockerignore_zero(root: Path) -> None:
    (root / "specs" / "ctx").mkdir()
    (root / "specs" / "ctx" / ".dockerignore").symlink_to("/dev/zero")
    (root / "specs" / "img.yaml").write_text(
        "version: 1\nimages:\n  site:\n    context: ./ctx\n    path: /srv\n"
    )


def _expansion_bomb(root: Path) -> None:
    (root / "specs" / "env.yaml").write_text('version: 1\nx-a: "' + "${BIG}" * 150_000 + '"\n')


def _link_to_passwd(root: Path) -> None:  # read as root, its keys would be quoted back
    (root / "specs" / "pw.yaml").symlink_to("/etc/passwd")


def _dockerignore_out_of_context(root: Path) -> None:
    (root / "specs" / "ctx").mkdir()
    (root / "specs" / "ctx" / ".dockerignore").symlink_to("/etc/shadow")
    (root / "specs" / "img.yaml").write_text(
        "version: 1\nimages:\n  site:\n    context: ./ctx\n    path: /srv\n"
    )


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "expansion-bomb": (
        _expansion_bomb,
        "specs/env.yaml:2: x-a: variables expand to more than 1048576 characters",
    ),
    "spec-link-to-etc-passwd": (
        _link_to_passwd,
        "specs/pw.yaml:1: not read: specs/pw.yaml resolves to /etc/passwd, which is under the "
        "protected /etc; refused by the default host-path policy",
    ),
    "dockerignore-link-out-of-the-context": (
        _dockerignore_out_of_context,
        "specs/img.yaml:4: images.site.context: .dockerignore is not readable (it is a "
        "symlink to /etc/shadow, outside the context)",
    ),
    "fifo-spec": (
        _fifo,
        "specs/x.yaml:1: cannot read the file: it is not a regular file but a FIFO",
    ),
    "link-to-dev-zero": (
        _zero_link,
        "specs/z.yaml:1: not read: specs/z.yaml resolves to /dev/zero, which is under the "
        "protected /dev",
    ),
    "link-to-dev-urandom": (
        _urandom_link,
        "specs/r.yml:1: not read: specs/r.yml resolves to /dev/urandom, which is under the "
        "protected /dev",
    ),
    "link-to-a-fifo": (
        _fifo_link,
        "specs/f.yaml:1: cannot read the file: it is not a regular file but a FIFO",
    ),
    "larger-than-1-mib": (
        _huge,
        "specs/big.yaml:1: cannot read the file: it is larger than the 1 MiB dsr reads",
    ),
    "sparse-16-gib": (
        _sparse,
        "specs/sparse.yaml:1: cannot read the file: it is larger than the 1 MiB dsr reads",
    ),
    "billion-laughs": (
        _bomb,
        "specs/bomb.yaml:6: x-a5[0]: YAML aliases expand to more than 100000 values",
    ),
    "mapping-alias-bomb": (
        _merge_bomb,
        "specs/merge.yaml:7: x-m5.k0: YAML aliases expand to more than 100000 values",
    ),
    "nesting-990-flow": (_deep_flow, "specs/deep.yaml:2: x-d[0]: values nest more than 64"),
    "nesting-block-lists": (_deep_block, "specs/deep.yaml:4: x-d[0]: values nest more than 64"),
    "nesting-500-mappings": (_deep_mapping, "specs/deep.yaml:2: x-d.a: values nest more than 64"),
    "dockerignore-fifo": (
        _dockerignore_fifo,
        "specs/img.yaml:4: images.site.context: .dockerignore is not readable "
        "(it is not a regular file but a FIFO)",
    ),
    "dockerignore-dev-zero": (
        _dockerignore_zero,
        "specs/img.yaml:4: images.site.context: .dockerignore is not readable "
        "(it is a symlink to /dev/zero, outside the context)",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_file_is_refused_fast(name: str, tmp_path: Path) -> None:
    make, expected = CASES[name]
    (tmp_path / "specs").mkdir()
    make(tmp_path)
    before = snapshot(tmp_path)
    code, output, seconds = validate(tmp_path, "specs")
    assert code == 1, output
    assert expected in output, output
    assert "Traceback" not in output
    assert seconds < LIMIT_S, f"took {seconds:.2f} s"
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_node_outside_dev_is_refused(tmp_path: Path) -> None:
    # /dev/zero's own device numbers, made where the path policy protects nothing.
    (tmp_path / "specs").mkdir()
    os.mknod(tmp_path / "zero", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    (tmp_path / "specs" / "z.yaml").symlink_to("../zero")
    code, output, seconds = validate(tmp_path, "specs")
    assert code == 1 and seconds < LIMIT_S and "Traceback" not in output
    assert (
        "specs/z.yaml:1: cannot read the file: it is not a regular file but a character " in output
    )


def test_policy_file_that_never_ends_is_refused(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text("version: 1\n")
    os.mkfifo(tmp_path / "policy.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    for policy in ("policy.yaml", "zero.yaml"):
        code, output, seconds = validate(tmp_path, "--policy", policy, "specs")
        assert code == 1 and seconds < LIMIT_S
        assert f"dsr: {policy}: cannot read the policy file: it is not a regular file" in output
        assert "Traceback" not in output


def test_a_spec_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    head = "version: 1\n"
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(head + "#" * (MAX_INPUT_BYTES - len(head)))
    code, output, _ = validate(tmp_path, "specs")
    assert code == 0, output
