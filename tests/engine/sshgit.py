"""A git remote over real ssh for the tests: ``sshd -D`` on 127.0.0.1 and a free port, with
its own config, a host key and one authorized client key made for the test.

``SshRemote.start(folder)`` returns a running server; ``url(path)`` is an ``ssh://`` URL of
a repository on this machine, and ``ssh_command(keys)`` the ``GIT_SSH_COMMAND`` a client
(here or in a container whose ``keys`` folder holds ``client`` and ``known_hosts``) uses.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sshd_binary() -> str | None:
    return shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


class SshRemote:
    def __init__(self, folder: Path, proc: subprocess.Popen[bytes], port: int) -> None:
        self.folder = folder
        self.proc = proc
        self.port = port
        self.keys = folder / "keys"  # client, known_hosts: what a client needs

    @classmethod
    def start(cls, folder: Path) -> SshRemote:
        sshd = sshd_binary()
        assert sshd, "openssh-server is installed by deploy/setup-docker.sh"
        folder.mkdir(parents=True, exist_ok=True)
        keys = folder / "keys"
        keys.mkdir()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(folder / "host_key")], check=True)
        subprocess.run([*keygen, "-f", str(keys / "client")], check=True)
        shutil.copy(keys / "client.pub", folder / "authorized_keys")
        os.chmod(folder / "authorized_keys", 0o600)
        port = _free_port()
        host_pub = (folder / "host_key.pub").read_text().split()
        (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {folder / 'host_key'}",
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                    f"PidFile {folder / 'sshd.pid'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "StrictModes no",
                    "UsePAM no",
                    "",
                ]
            )
        )
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege-separation root
        proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(folder / "sshd.log", "wb"),  # noqa: SIM115
        )
        remote = cls(folder, proc, port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (folder / "sshd.log").read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return remote
            except OSError:
                time.sleep(0.1)
        remote.stop()
        raise RuntimeError("sshd did not listen in 15 s")

    def url(self, path: Path) -> str:
        user = pwd.getpwuid(os.getuid()).pw_name
        return f"ssh://{user}@127.0.0.1:{self.port}{path}"

    @staticmethod
    def ssh_command(keys: Path) -> str:
        return (
            f"ssh -i {keys / 'client'} -o UserKnownHostsFile={keys / 'known_hosts'} "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
