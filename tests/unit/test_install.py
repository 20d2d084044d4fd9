"""The release route: an sdist built from this checkout, a wheel built from that sdist (no
.git there), installed into a fresh virtual environment: ``dsr --version`` names the
version and the commit it was built from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str | os.PathLike[str], cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_sdist_then_wheel_then_a_fresh_venv(tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    # setup.py writes only into the build folders, never into the checkout.
    assert not (ROOT / "reconciler" / "_commit").exists()
    dist = tmp_path / "dist"
    run(sys.executable, "setup.py", "-q", "sdist", "-d", dist, cwd=ROOT)
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        [baked] = [n for n in names if n.endswith("reconciler/_commit")]
        commit = archive.extractfile(baked).read().decode().strip()  # type: ignore[union-attr]
    assert commit == (head or commit)
    assert not (ROOT / "reconciler" / "_commit").exists()

    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, sdist)
    [wheel] = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("reconciler/_commit").decode().strip() == commit

    # The systemd route: install.sh makes the venv, links the command, installs the unit.
    opt, bin_dir, units = tmp_path / "opt", tmp_path / "bin", tmp_path / "units"
    env = {"DSR_PREFIX": str(opt), "DSR_BIN_DIR": str(bin_dir), "DSR_UNIT_DIR": str(units)}
    done = subprocess.run(
        ["bash", str(ROOT / "deploy/systemd/install.sh"), str(wheel)],
        env={**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = run(bin_dir / "dsr", "--version", cwd=tmp_path)
    version = run(
        opt / "bin" / "python",
        "-c",
        "import importlib.metadata as m; print(m.version('docker-storage-reconciler'))",
    ).strip()
    assert out.strip() == f"dsr {version} (commit {commit})"
    assert (bin_dir / "dsr").resolve() == (opt / "bin" / "dsr").resolve()
    unit = (units / "dsr.service").read_text()
    assert f"ExecStart={opt}/bin/dsr " in unit
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(units / "dsr.service")],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
