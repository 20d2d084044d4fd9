"""The bytes of an S3 upload: parts sent ahead on worker threads, each with its Content-MD5."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from reconciler.backup.errors import BackupError

PART = 8 << 20  # bytes per uploaded part; S3 allows 10,000 parts
MOST_PART = 64 << 20  # the largest part (archives beyond 640 GB take larger ones)
READ = 1 << 20


def schedule(number: int) -> tuple[int, int]:
    """(size, parts sent ahead) of part ``number`` of an archive whose size is not known
    (it goes up as it is made). Parts grow so that 10,000 hold any archive up to about
    370 GB, and fewer travel at once as they grow: the parts held in memory stay at
    24-64 MiB. Up to 112 GB (6,000 parts) they stay at most 32 MiB in flight."""
    if number <= 2000:
        return PART, 2  # 16 GB
    if number <= 4000:
        return 2 * PART, 1  # 48 GB
    if number <= 6000:
        return 4 * PART, 0  # 112 GB
    return MOST_PART, 0


def part_size(size: int) -> int:
    """Parts of ``PART`` bytes, larger for archives that 9,000 of those would not hold."""
    need = (size + size // 1000 + (1 << 20)) // 9000 + 1
    return min(max(PART, need), MOST_PART)


class Upload:
    """A file-like ``write`` that stores what it is given as the parts of one upload.

    A part is sent on a worker thread while the next one fills (the network and the store
    work while dsr reads and encrypts): at most ``AHEAD`` parts travel at once (fewer as
    parts grow, see ``schedule``), so the memory stays at a few parts whatever the
    archive's size. A part's buffer is handed to the request as it is, never copied; a
    part holds at least ``part`` bytes (the last one fewer), at most one write more."""

    AHEAD = 2

    def __init__(self, store: Any, key: str, part: int = 0) -> None:
        self.store = store
        self.key = key
        self.fixed = part  # 0: sizes by ``schedule``, the archive's size not being known
        self.part = part or PART
        self.ahead = self.AHEAD
        self.most_ahead = self.AHEAD  # lowered when several uploads share the memory
        self.error: BaseException | None = None  # the first failure, for the caller
        self.buffer: bytes | bytearray = bytearray()
        self.own = True  # ``buffer`` is this upload's to add to (not a part given whole)
        self.parts: dict[int, str] = {}
        self.count = 0
        self.upload_id: str | None = None
        self.pool = ThreadPoolExecutor(max_workers=self.AHEAD, thread_name_prefix="dsr-upload")
        self.pending: list[Future[None]] = []
        self.number = 0

    def write(self, data: bytes | bytearray) -> int:
        if not self.buffer:
            self.buffer = data  # as given, not copied: a ``tee.Tee`` hands each store one part
            self.own = False
        else:
            if not self.own:  # what was given is another's: added to in a copy of its own
                self.buffer = bytearray(self.buffer)
                self.own = True
            self.buffer += data
        if len(self.buffer) >= self.part:
            try:
                self._send()
            except BaseException as err:
                self.error = self.error or err
                raise
        return len(data)

    def flush(self) -> None:
        pass

    def _send(self) -> None:
        store = self.store
        if self.upload_id is None:
            with store._errors(f"start uploading {self.key}"):
                made = store.client.create_multipart_upload(Bucket=store.bucket, Key=self.key)
            self.upload_id = str(made["UploadId"])
        data, self.buffer = self.buffer, bytearray()  # handed on as is: no copy
        self.number += 1
        self.count += len(data)
        if not self.fixed:
            self.part, self.ahead = schedule(self.number + 1)
        self.ahead = min(self.ahead, self.most_ahead)
        while len(self.pending) >= max(self.ahead, 1):  # a failed part raises here
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._part, self.number, data))
        if not self.ahead:
            self.pending.pop(0).result()

    def _part(self, number: int, data: bytes | bytearray) -> None:
        store = self.store
        md5 = hashlib.md5(data)
        with store._errors(f"upload part {number} of {self.key}"):
            sent = store.client.upload_part(
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=base64.b64encode(md5.digest()).decode(),
            )
        etag = str(sent.get("ETag", "")).strip('"')
        if etag and etag != md5.hexdigest():
            raise BackupError(f"{store.url}: part {number} of {self.key} was stored as other bytes")
        self.parts[number] = str(sent["ETag"])

    def complete(self) -> None:
        if self.buffer or not self.number:
            self._send()
        for future in self.pending:
            future.result()
        self.pending.clear()
        self.pool.shutdown()
        store = self.store
        parts = [{"PartNumber": n, "ETag": self.parts[n]} for n in sorted(self.parts)]
        if len(parts) != self.number:
            raise BackupError(f"{store.url}: {self.key}: a part is missing")
        with store._errors(f"complete {self.key}"):
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
            self.upload_id = None
            size = store.client.head_object(Bucket=store.bucket, Key=self.key)["ContentLength"]
        if size != self.count:
            raise BackupError(f"{store.url}: {self.key} has {size} bytes, {self.count} were sent")

    def abort(self) -> None:
        for future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)
        self.pending.clear()
        if self.upload_id is None:
            return
        with contextlib.suppress(Exception):
            self.store.quick_client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=self.upload_id
            )
        self.upload_id = None
