"""age encryption of archives and manifests, through pyrage (the Rust ``age`` crate).

A rule's ``encrypt_to`` lists recipients (``age1...`` X25519 keys, or SSH public keys);
its archives become ``archive.tar.zst.age`` and its manifests ``manifest.json.age``, in
the age format, so ``age -d -i KEY`` reads them without dsr. Encryption and decryption
stream between file objects (``pyrage.encrypt_io``/``decrypt_io`` work in 64 KiB chunks):
the memory stays small whatever the archive's size.

Identities (to read) come from ``--identity FILE`` or ``DSR_AGE_IDENTITY`` (a file's path,
or the ``AGE-SECRET-KEY-1...`` text itself): an age identity file (one key a line, ``#``
comments) or an unencrypted OpenSSH private key.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

from reconciler.backup.errors import BackupError, ChecksumError
from reconciler.files import read_bounded

SUFFIX = ".age"
ENV = "DSR_AGE_IDENTITY"
MOST_KEY_FILE = 1 << 16


def recipients(texts: Iterable[str]) -> list[Any]:
    import pyrage

    out: list[Any] = []
    for text in texts:
        parser = pyrage.x25519.Recipient if text.startswith("age1") else pyrage.ssh.Recipient
        try:
            out.append(parser.from_str(text))
        except Exception as err:
            raise BackupError(f"{text[:60]!r} is not an age recipient: {err}") from err
    return out


def identities(path: str | None) -> list[Any]:
    """The identities of ``--identity FILE`` (``path``), else of ``DSR_AGE_IDENTITY``;
    none when neither is given."""
    import pyrage

    given = path or os.environ.get(ENV) or ""
    if not given:
        return []
    if given.strip().startswith("AGE-SECRET-KEY-"):
        text, where = given, f"${ENV}"
    else:
        where = given
        try:  # a regular file of at most 64 KiB: a FIFO or /dev/zero must not hang us
            data = read_bounded(given, MOST_KEY_FILE)
        except OSError as err:
            raise BackupError(f"cannot read the age identity {given}: {err.strerror}") from err
        if b"PRIVATE KEY-----" in data:
            try:
                return [pyrage.ssh.Identity.from_buffer(data)]
            except Exception as err:
                raise BackupError(f"{given}: not a usable SSH private key: {err}") from err
        text = data.decode("utf-8", "replace")
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except Exception as err:
            raise BackupError(f"{where}: a line is not an age identity: {err}") from err
    if not found:
        raise BackupError(f"{where} holds no age identity (AGE-SECRET-KEY-1...)")
    return found


def encrypt_stream(source: BinaryIO | Any, out: BinaryIO | Any, to: Sequence[Any]) -> None:
    import pyrage

    try:
        pyrage.encrypt_io(source, out, list(to))
    except pyrage.EncryptError as err:
        raise BackupError(f"age encryption failed: {err}") from err


def decrypt_stream(
    source: BinaryIO | Any, out: BinaryIO | Any, keys: Sequence[Any], what: str
) -> None:
    import pyrage

    if not keys:
        raise BackupError(f"{what} is encrypted with age: pass --identity FILE or set {ENV}")
    try:
        pyrage.decrypt_io(source, out, list(keys))
    except pyrage.DecryptError as err:
        raise ChecksumError(
            f"{what}: age cannot decrypt it with the identity given: {err}"
        ) from err


def encrypt(data: bytes, to: Sequence[Any]) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(data), out, to)
    return out.getvalue()


def decrypt(data: bytes, keys: Sequence[Any], what: str) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, keys, what)
    return out.getvalue()
