"""Property: a path built from protected roots, ``..``, ``//``, symlinks and allowed
folders is refused exactly when its resolved form is, lies under or contains a protected
path that the policy does not allow (and, with ``bind_roots``, when it resolves outside)."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.spec.policy import DOCKER_SOCKETS, PROTECTED, Policy

STARTS = ["/", "//", "/etc", "/var", "/var/lib", "/run", "/srv", "/etc/ssl", "/dev", "@TMP"]
PARTS = [
    "..",
    ".",
    "",
    "etc",
    "lib",
    "docker",
    "ssl",
    "certs",
    "run",
    "var",
    "x",
    "shm",
    "containerd",
    "docker.sock",
    "to-etc",
    "to-var-lib",
    "to-root",
    "to-allowed",
    "to-run",
    "up",
    "state",
    "backups",
    "allowed",
]
LINKS = {
    "to-etc": "/etc",
    "to-var-lib": "/var/lib",
    "to-root": "/",
    "to-run": "/run",
    "to-allowed": "@TMP/allowed",
    "up": "..",
}


def oracle(real: str, protected: list[str], allowed: list[str], roots: list[str] | None) -> bool:
    """Written apart from the policy: compare path components, the pattern on each."""
    parts = PurePosixPath(real).parts

    def under(path: str, root: str) -> bool:
        have, want = PurePosixPath(path).parts, PurePosixPath(root).parts
        return len(have) >= len(want) and all(
            fnmatch.fnmatchcase(h, w) for h, w in zip(have, want, strict=False)
        )

    for root in protected:
        want = PurePosixPath(root).parts
        shared = min(len(parts), len(want))
        if all(fnmatch.fnmatchcase(parts[i], want[i]) for i in range(shared)):
            deeper = real if len(parts) >= len(want) else root
            if not any(under(deeper, a) for a in allowed):
                return True
    if roots is not None:
        return not any(under(real, r) for r in roots)
    return False


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policy")
    (root / "allowed" / "x").mkdir(parents=True)
    (root / "state" / "backups").mkdir(parents=True)
    for name, target in LINKS.items():
        (root / name).symlink_to(target.replace("@TMP", str(root)))
        (root / "allowed" / name).symlink_to(target.replace("@TMP", str(root)))
    return root


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    start=st.sampled_from(STARTS),
    parts=st.lists(st.sampled_from(PARTS), max_size=6),
    allow=st.sets(
        st.sampled_from(["/etc/ssl", "/var/lib/docker", "/run", "@TMP/allowed", "/"]), max_size=2
    ),
    limit=st.booleans(),
)
def test_refused_exactly_when_the_resolved_path_is_protected(
    tree: Path, start: str, parts: list[str], allow: set[str], limit: bool
) -> None:
    tmp = str(tree)
    path = "/".join([start.replace("@TMP", tmp), *parts])
    allowed = sorted(a.replace("@TMP", tmp) for a in allow)
    roots = [f"{tmp}/allowed", "/srv"] if limit else None
    policy = Policy(
        allow=tuple(allowed),
        bind_roots=None if roots is None else tuple(roots),
        docker_socket=None,
        state_dir=f"{tmp}/state",
    )
    protected = [*PROTECTED, *DOCKER_SOCKETS, f"{tmp}/state", f"{tmp}/state/backups"]
    protected += [os.path.realpath(p) for p in protected if "*" not in p]
    real = os.path.realpath(path)
    expected = oracle(real, protected, [os.path.realpath(a) for a in allowed], roots)
    assert (policy.check(path) is not None) == expected, (path, real)
    # A backup destination inside dsr's backup directory is the one exception.
    if real.startswith(f"{tmp}/state/backups/") and not limit:
        assert policy.check(path, role="destination") is None or oracle(
            real, [p for p in protected if "/state" not in p], allowed, None
        )
