"""The S3 store: snapshots in any S3-compatible service (AWS, MinIO, SeaweedFS, Ceph, R2, B2).

Layout (the contract's)::

    s3://BUCKET/PREFIX/PROJECT/ID/
        archive.tar.zst[.age]    stored by a multipart upload
        manifest.json[.age]      stored last, once every part is stored and checked
        verify.json              the last ``dsr backups verify`` of it: time and outcome

An archive goes up as it is made (``s3stream``: nothing is staged on this host's disk),
in parts of 8 MiB and more (``s3io.schedule``), a few at a time on a small pool of
threads (the memory holds a few parts, whatever the archive's size), each sent with its
Content-MD5, which the store checks and refuses when it differs, and whose ETag must then
be that MD5. The upload is completed, the object's size checked, and only then the
manifest written: a snapshot without one lists as nothing (prune removes what it left),
and a failed upload is aborted, its parts with it. Uploads that a killed run left open
under the project are aborted by the next backup. A restore reads the archive from the
store's response, through age and zstd, straight into the target (``s3stream.opened``).
Requests are retried with backoff on throttling, timeouts and dropped connections
(botocore's standard retry mode), ``ATTEMPTS`` tries of at most ``TIMEOUT`` seconds of
silence each (``DSR_S3_TIMEOUT``, ``DSR_S3_ATTEMPTS``): a store that stops answering (a
paused process, a dead link) fails the run within about attempts x timeout + 7 s, 67 s
by default. Credentials come from boto3's usual chain only: the ``AWS_*`` variables, the
shared credentials and config files, profiles (``AWS_PROFILE``); never from the spec.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler import logs
from reconciler.backup import crypt, s3stream
from reconciler.backup.errors import BackupError
from reconciler.backup.manifest import ARCHIVE, MANIFEST, Manifest, ManifestError, parse_manifest
from reconciler.backup.s3stream import Streamed
from reconciler.backup.store import COMPLETE, DAMAGED, VERIFY, Found, Place, Snapshot
from reconciler.escape import escape_controls
from reconciler.files import parse_json, read_regular, write_json
from reconciler.spec.backups import s3_parts
from reconciler.statedir import alive

log = logs.get_logger("dsr.backup")

MOST_MANIFEST = 1 << 20
READ = 1 << 20
AGE_CHUNK = 64 << 10  # age's payload chunk; each costs 16 bytes of tag


# An open multipart upload no record names is aborted once this old (another host's
# killed run, a lost state directory): no backup's upload lasts a day.
STALE_UPLOAD = timedelta(days=1)
UPLOADS = "uploads"  # staging/uploads/PID-HASH.json: the uploads a run of this host started
TIMEOUT = 15.0  # seconds a request may wait for the store (DSR_S3_TIMEOUT)
ATTEMPTS = 4  # tries of each request (DSR_S3_ATTEMPTS), with backoff between them


def timeouts() -> tuple[float, int]:
    """(seconds, attempts) of each request: a store that stops answering fails a request
    after about attempts x seconds, plus the backoff between tries (up to 1+2+4 s)."""
    seconds, attempts = TIMEOUT, ATTEMPTS
    with contextlib.suppress(ValueError):
        seconds = min(max(float(os.environ.get("DSR_S3_TIMEOUT", TIMEOUT)), 1.0), 600.0)
    with contextlib.suppress(ValueError):
        attempts = min(max(int(os.environ.get("DSR_S3_ATTEMPTS", ATTEMPTS)), 1), 20)
    return seconds, attempts


from botocore.exceptions import ResponseStreamingError as _Streaming  # noqa: E402


class S3(Place):
    """An ``s3://BUCKET/PREFIX`` destination."""

    remote = True

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        recipients: tuple[str, ...] = (),
        identities: tuple[Any, ...] = (),
        staging: str = "",
        known: str = "",
    ) -> None:
        parts = s3_parts(url)
        if parts is None:
            raise BackupError(f"{url} is not s3://BUCKET/PREFIX")
        self.url = url
        self.bucket, self.prefix = parts
        self.endpoint = endpoint
        self.region = region
        self.recipients = recipients
        self.identities = identities
        self.staging = staging
        self.known = known
        self._client: Any = None
        self._quick: Any = None
        self._etags: dict[str, str] = {}

    @property
    def key(self) -> str:
        return f"s3|{self.endpoint or 'aws'}|{self.bucket}|{self.prefix}"

    @property
    def where(self) -> str:
        return self.url + (f" at {self.endpoint}" if self.endpoint else "")

    # -- the client ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The client of every request: timeouts and retries as ``timeouts`` says."""
        if self._client is None:
            seconds, attempts = timeouts()
            self._client = self._new_client(seconds, attempts)
        return self._client

    @property
    def quick_client(self) -> Any:
        """The client that cleans up after a failure (aborts, deletes): one try, short
        timeouts, so a store that stopped answering does not hold the error back; what it
        leaves is aborted or removed by the next backup or prune."""
        if self._quick is None:
            seconds, _ = timeouts()
            self._quick = self._new_client(min(seconds, 5.0), 1)
        return self._quick

    def _new_client(self, seconds: float, attempts: int) -> Any:
        from botocore.config import Config

        config = Config(
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=min(seconds, 10.0),
            read_timeout=seconds,
            # Content-MD5 is sent by dsr itself; CRC headers are not every service's.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if self.endpoint else {},
            max_pool_connections=4,
        )
        with self._errors("connect"):
            session = _session()
            return session.client(
                "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
            )

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """botocore's errors as ``BackupError``s that say what to do."""
        from botocore import exceptions as e

        try:
            yield
        except e.NoCredentialsError as err:
            raise BackupError(
                f"{self.where}: no S3 credentials: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file"
            ) from err
        except e.ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            raise BackupError(f"{self.where}: {doing}: {_explain(code, self.bucket, err)}") from err
        except (e.ConnectionError, e.ConnectionClosedError, e.ReadTimeoutError, _Streaming) as err:
            # An OSError cause: "cannot read now", never "damaged" (prune keeps such ones).
            raise BackupError(
                f"{self.where}: {doing}: cannot reach the store: {err}"
            ) from ConnectionError(str(err))
        except e.BotoCoreError as err:
            raise BackupError(f"{self.where}: {doing}: {err}") from err

    # -- reading -------------------------------------------------------------------------

    def _root(self, project: str) -> str:
        return f"{self.prefix}/{project}/" if self.prefix else f"{project}/"

    def _objects(self, project: str) -> dict[str, dict[str, int]]:
        """ID -> {file name: size} of every object under the project."""
        root = self._root(project)
        out: dict[str, dict[str, int]] = {}
        with self._errors("list"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root
            )
            for page in pages:
                for item in page.get("Contents", []):
                    rest = str(item["Key"])[len(root) :]
                    snapshot_id, _, name = rest.partition("/")
                    if snapshot_id and name and "/" not in name:
                        out.setdefault(snapshot_id, {})[name] = int(item["Size"])
                        self._etags[str(item["Key"])] = str(item.get("ETag", "")).strip('"')
        return out

    def taken(self, project: str) -> set[str]:
        return set(self._objects(project))

    def find(self, project: str) -> Found:
        snapshots: list[Snapshot] = []
        unfinished: list[str] = []
        unreadable: list[str] = []
        for snapshot_id, files in sorted(self._objects(project).items()):
            folder = self._root(project) + snapshot_id
            encrypted = MANIFEST + crypt.SUFFIX in files
            if not encrypted and MANIFEST not in files:
                unfinished.append(folder)
                continue
            manifest = self._manifest(folder, encrypted)
            if manifest is None or manifest.id != snapshot_id or manifest.project != project:
                log.warning("manifest_unreadable", folder=folder)
                unreadable.append(folder)
                continue
            status, problem = self._status(folder, files, manifest, encrypted)
            snapshots.append(Snapshot(manifest, folder, status, problem, self))
        snapshots.sort(key=lambda s: (s.manifest.policy, s.manifest.source, -s.time.timestamp()))
        return Found(tuple(snapshots), tuple(unfinished), tuple(unreadable))

    def _manifest(self, folder: str, encrypted: bool) -> Manifest | None:
        name = MANIFEST + (crypt.SUFFIX if encrypted else "")
        key = f"{folder}/{name}"
        known = self._known(key)
        if encrypted and not self.identities and known is not None:
            data = known  # this host wrote it, and the store still holds that very object
        else:
            data = self._get_small(key)
            if encrypted:
                data = crypt.decrypt(data, self.identities, f"{self.url}: {key}")
        try:
            return parse_manifest(data)  # the same strict, bounded schema as a folder's
        except ManifestError:
            return None

    def _known_file(self, key: str) -> str:
        digest = hashlib.sha256(f"{self.key}|{key}".encode()).hexdigest()
        return os.path.join(self.known, digest[:2], digest + ".json")

    def _known(self, key: str) -> bytes | None:
        """The plain manifest this host stored as ``key``, while the store's object (by its
        ETag) is still the one stored: a host prunes and lists its own encrypted snapshots
        without holding the identity that decrypts them."""
        if not self.known or not self._etags.get(key):
            return None
        try:
            with open(self._known_file(key), encoding="utf-8") as handle:
                doc = parse_json(handle.read(MOST_MANIFEST))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("etag") != self._etags[key]:
            return None
        manifest = doc.get("manifest")
        return json.dumps(manifest).encode() if isinstance(manifest, dict) else None

    def _remember(self, key: str, etag: str, manifest: Manifest) -> None:
        if not self.known or not etag:
            return
        path = self._known_file(key)
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_json(path, {"etag": etag, "manifest": manifest.to_json()})

    def _get_small(self, key: str) -> bytes:
        with self._errors(f"read {key}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            data: bytes = body.read(MOST_MANIFEST + 1)
            body.close()
        if len(data) > MOST_MANIFEST:
            raise BackupError(f"{self.url}: {key} is larger than any manifest")
        return data

    def _status(
        self, folder: str, files: dict[str, int], manifest: Manifest, encrypted: bool
    ) -> tuple[str, str]:
        name = ARCHIVE + (crypt.SUFFIX if encrypted else "")
        size = files.get(name)
        if size is None:
            return DAMAGED, "the archive is missing"
        least = manifest.archive_size + (manifest.archive_size // AGE_CHUNK + 1) * 16
        if (not encrypted and size != manifest.archive_size) or (encrypted and size < least):
            return DAMAGED, f"the archive has {size} bytes; its manifest says otherwise"
        if VERIFY in files:
            with contextlib.suppress(BackupError, ValueError):
                verified = parse_json(self._get_small(f"{folder}/{VERIFY}"))
                if isinstance(verified, dict) and verified.get("ok") is False:
                    error = verified.get("error")
                    text = error if isinstance(error, str) else "the last verify failed"
                    return DAMAGED, escape_controls(text)[:1000]
        return COMPLETE, ""

    @contextlib.contextmanager
    def fetched(self, snapshot: Snapshot) -> Iterator[Snapshot]:
        """The snapshot read straight from the store (``Snapshot.opener``): nothing is
        downloaded to this host's disk first; each reading checks the archive's sha256."""
        encrypted = snapshot.folder + "/" + ARCHIVE + crypt.SUFFIX
        files = self._objects(snapshot.manifest.project).get(snapshot.id, {})
        key = encrypted if ARCHIVE + crypt.SUFFIX in files else f"{snapshot.folder}/{ARCHIVE}"
        yield dataclasses.replace(
            snapshot, opener=functools.partial(s3stream.opened, self, key, key == encrypted)
        )

    # -- writing -------------------------------------------------------------------------

    def stream(self, project: str, snapshot_id: str) -> Streamed:
        """The upload of a new snapshot's archive as it is made (its bytes encrypted
        already when this place encrypts); its ``commit`` writes the manifest after."""
        base = f"{self._root(project)}{snapshot_id}"
        if snapshot_id in self._objects(project):
            raise BackupError(f"{self.url}: {base} exists already")
        self.abort_stale(project)
        suffix = crypt.SUFFIX if self.encrypts else ""
        self._record(f"{base}/{ARCHIVE}{suffix}")
        return Streamed(self, base, f"{base}/{ARCHIVE}{suffix}")

    def put_manifest(self, base: str, manifest: Manifest) -> None:
        """The manifest of the snapshot under ``base``, written last: now it lists."""
        self._put_manifest(base, manifest)

    def _put_manifest(self, base: str, manifest: Manifest) -> None:
        suffix = crypt.SUFFIX if self.encrypts else ""
        body = json.dumps(manifest.to_json(), indent=2).encode()
        if self.encrypts:
            body = crypt.encrypt(body, crypt.recipients(self.recipients))
        etag = self._put_small(f"{base}/{MANIFEST}{suffix}", body)  # last: it lists
        if self.encrypts:
            self._remember(f"{base}/{MANIFEST}{suffix}", etag, manifest)

    def _put_small(self, key: str, body: bytes) -> str:
        """Store ``body`` as ``key``, checked; its ETag."""
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        with self._errors(f"write {key}"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5)
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        if head["ContentLength"] != len(body):
            raise BackupError(
                f"{self.url}: {key} has {head['ContentLength']} bytes, not {len(body)}"
            )
        return str(head.get("ETag", "")).strip('"')

    def abort_stale(self, project: str) -> int:
        """Abort the multipart uploads left open under the project by runs that were killed:
        their parts are stored, and billed, until someone does. Returns how many.

        Only uploads known dead are aborted: those this state directory's runs started
        (``_record``) whose process is gone, and any older than ``STALE_UPLOAD`` (lost
        records, other hosts' killed runs). Another host's (or state directory's) backup
        into the same bucket and project may be uploading right now: aborting every open
        upload failed it. Without a staging folder (no records), every one is aborted."""
        dead, records = self._dead_records()
        now = datetime.now(UTC)
        aborted = 0
        with self._errors("list open uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._root(project)
            )
            for page in pages:
                for item in page.get("Uploads", []):
                    started = item.get("Initiated")
                    old = isinstance(started, datetime) and now - started > STALE_UPLOAD
                    if self.staging and item["Key"] not in dead and not old:
                        continue  # maybe another run's, alive: left alone
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=item["Key"], UploadId=item["UploadId"]
                    )
                    log.info("upload_aborted", key=item["Key"], destination=self.url)
                    aborted += 1
        for path in records:
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            if records:
                os.rmdir(os.path.dirname(records[0]))  # when they were the last ones
        return aborted

    def _record(self, key: str) -> None:
        """Remember, before its upload starts, that this process uploads ``key`` here: once
        the process is gone, the next run aborts what it left open."""
        if not self.staging:
            return
        folder = os.path.join(self.staging, UPLOADS)
        digest = hashlib.sha256(f"{self.key}|{key}".encode()).hexdigest()[:24]
        with contextlib.suppress(OSError):  # a full state disk: it goes, a day later
            os.makedirs(folder, mode=0o700, exist_ok=True)
            write_json(
                os.path.join(folder, f"{os.getpid()}-{digest}.json"),
                {"store": self.key, "key": key},
            )

    def forget_upload(self, key: str) -> None:
        """This process's upload of ``key`` is a snapshot now: no record left of it."""
        if not self.staging:
            return
        folder = os.path.join(self.staging, UPLOADS)
        digest = hashlib.sha256(f"{self.key}|{key}".encode()).hexdigest()[:24]
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, f"{os.getpid()}-{digest}.json"))
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # when it was the last one

    def _dead_records(self) -> tuple[set[str], list[str]]:
        """The keys that runs now gone were uploading here, and their records' paths."""
        if not self.staging:
            return set(), []
        folder = os.path.join(self.staging, UPLOADS)
        keys: set[str] = set()
        paths: list[str] = []
        entries: list[os.DirEntry[str]] = []
        with contextlib.suppress(OSError), os.scandir(folder) as it:
            entries = [e for e in it if e.is_file(follow_symlinks=False)]
        for entry in entries:
            pid, _, _ = entry.name.partition("-")
            if not pid.isdigit() or (int(pid) > 0 and alive(int(pid))):
                continue
            try:
                doc = parse_json(read_regular(entry.path, 4096))
            except (OSError, ValueError):
                doc = None
            if isinstance(doc, dict) and doc.get("store") == self.key:
                keys.add(str(doc.get("key")))
                paths.append(entry.path)
        return keys, paths

    def remove(self, snapshot: Snapshot) -> None:
        base = snapshot.folder
        files = self._objects(snapshot.manifest.project).get(snapshot.id, {})
        manifests = [f"{base}/{n}" for n in files if n.startswith(MANIFEST)]
        self._delete(manifests)  # first: a half-removed snapshot lists as nothing
        self._delete([f"{base}/{n}" for n in files if not n.startswith(MANIFEST)])

    def remove_unfinished(self, item: str) -> None:
        project = item.rsplit("/", 2)[-2] if "/" in item else ""
        snapshot_id = item.rsplit("/", 1)[-1]
        files = self._objects(project).get(snapshot_id, {}) if project else {}
        self._delete([f"{item}/{n}" for n in files])

    def _delete(self, keys: list[str]) -> None:
        with self._errors("delete"):
            for key in keys:
                self.client.delete_object(Bucket=self.bucket, Key=key)

    def record_verify(self, snapshot: Snapshot, error: str | None) -> None:
        doc: dict[str, object] = {"time": datetime.now(UTC).isoformat(), "ok": error is None}
        if error and not self.encrypts and not snapshot.folder.endswith(crypt.SUFFIX):
            doc["error"] = error[:500]
        with contextlib.suppress(BackupError):
            self._put_small(f"{snapshot.folder}/{VERIFY}", json.dumps(doc).encode())


def _explain(code: str, bucket: str, err: Exception) -> str:
    if code in ("NoSuchBucket",):
        return f"the bucket {bucket} does not exist"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
        return f"the store refused the credentials ({code}): check AWS_* or the profile"
    if code in ("BadDigest", "InvalidDigest"):
        return f"the store received other bytes than were sent ({code})"
    return str(err)


_loader: Any = None  # botocore's parsed service models, shared by every session
_loader_lock = threading.Lock()


def _session() -> Any:
    """A new boto3 session (credentials and profile read afresh, as before) sharing one
    parsed copy of botocore's service models with the others: each session parsing its own
    took 13 MB, so a backup to two buckets held 26 MB of the same S3 model."""
    import boto3
    import botocore.session

    global _loader
    with _loader_lock:
        core = botocore.session.get_session()
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
        session = boto3.session.Session(botocore_session=core)
        paths = _loader.search_paths  # each boto3 session appends its own data folder
        paths[:] = dict.fromkeys(paths)
    return session
