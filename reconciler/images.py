"""Data-packed images: the build context, its content hash, and the build's tarball.

An image's tag is a hash of its context's content (names, bytes, modes, symlinks; what
``.dockerignore`` leaves out does not count), of ``base`` and of ``path``: an unchanged
context keeps its tag and is never rebuilt; any change gives a new tag. File hashes are
cached by (size, mtime, inode, ctime), so a second hash of a large context only stats it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from reconciler.escape import has_control
from reconciler.files import InputFileError, parse_json, read_bounded, write_json
from reconciler.globmatch import BadPattern, Budget, Glob, TooCostly

if TYPE_CHECKING:  # the spec checks contexts with this module: no import cycle at run time
    from reconciler.spec.models import Image

REPOSITORY = "dsr"
DOCKERFILE = ".dsr.Dockerfile"
_CONTEXT_DIR = "context"


class ContextError(Exception):
    """A build context dsr refuses: a link leading out of it, a special or unreadable file."""


@dataclass(frozen=True)
class PackedImage:
    """A data-packed image as its context makes it: the tag and each entry's hash."""

    tag: str
    manifest: Mapping[str, str]  # relative path -> content hash (or link target, or "dir")


def ignore_patterns(context: str) -> list[str]:
    """The patterns of the context's ``.dockerignore``; ``OSError`` when it cannot be read,
    is not a regular file (a FIFO would hang the read) or is larger than dsr reads."""
    path = os.path.join(context, ".dockerignore")
    real = os.path.realpath(path)
    if os.path.islink(path) and not real.startswith(os.path.realpath(context) + os.sep):
        # A link out of the context would make dsr read (as root) a file the spec's author
        # chose anywhere on the host.
        raise InputFileError(f"it is a symlink to {os.readlink(path)}, outside the context", path)
    try:
        data = read_bounded(path)
    except FileNotFoundError:
        return []
    # Docker reads it as bytes; surrogateescape keeps odd bytes as os.listdir does.
    lines = data.decode("utf-8", errors="surrogateescape").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for pattern in patterns:
        try:
            Glob(pattern.lstrip("!"))
        except BadPattern as err:
            raise InputFileError(f"a pattern Docker cannot read: {err}", path) from err
    return patterns


def entries(context: str) -> Iterator[str]:
    """Relative paths of the context that a build sends, sorted, .dockerignore applied."""
    patterns = ignore_patterns(context)
    if not patterns:
        # Raise on a folder it cannot list, as PatternMatcher.walk does: skipping it would
        # leave its files out of the hash and the build without a word.
        for root, dirs, files in os.walk(context, onerror=_raise):
            dirs.sort()
            base = os.path.relpath(root, context)
            prefix = "" if base == "." else base + os.sep
            for name in sorted(dirs + files):
                yield prefix + name
        return
    # docker's own .dockerignore matcher; imported here so that checking a spec does not
    # pay for importing the Docker client.
    from docker.utils.build import PatternMatcher

    try:
        found = sorted(linear_matcher(PatternMatcher(patterns)).walk(context))
    except TooCostly as err:  # an OSError naming the file, as callers expect of inputs
        raise InputFileError(str(err), os.path.join(context, ".dockerignore")) from err
    yield from found


def linear_matcher(matcher: Any) -> Any:
    """docker's ``PatternMatcher`` with each pattern matched by ``globmatch.Glob``, in
    linear time: its regular expressions backtrack exponentially on ``**/**/**/...``."""
    budget = Budget()  # one for the whole walk: bounded work however hostile the patterns
    for pattern in matcher.patterns:
        pattern.match = Glob(pattern.cleaned_pattern, budget).match
    return matcher


def _raise(err: OSError) -> None:
    raise err


def context_problems(context: str) -> list[str]:
    """What makes a context unusable; only stats, reads nothing."""
    return _scan(context)[1]


def _scan(context: str) -> tuple[list[tuple[str, os.stat_result]], list[str]]:
    """Each entry a build sends with its ``lstat``, and the problems found: one walk and one
    stat per entry, which is all a hash with a warm cache costs."""
    problems: list[str] = []
    if not os.access(context, os.R_OK | os.X_OK):
        return [], ["the context is not readable"]
    try:
        found = list(entries(context))
    except OSError as err:  # a folder, or .dockerignore, that cannot be read
        where = os.path.relpath(err.filename, context) if err.filename else "."
        return [], [f"{'the context' if where == '.' else where} is not readable ({err.strerror})"]
    root = os.path.realpath(context)
    base = os.path.join(context, "")
    scanned = []
    for rel in found:
        path = base + rel
        try:
            info = os.lstat(path)
        except OSError as err:
            problems.append(f"{rel}: {err.strerror}")
            continue
        if stat.S_ISLNK(info.st_mode):
            target = os.path.realpath(path)
            if target != root and not target.startswith(root + os.sep):
                problems.append(f"{rel} is a symlink to {os.readlink(path)}, outside the context")
        elif stat.S_ISREG(info.st_mode):
            if not os.access(path, os.R_OK):
                problems.append(f"{rel} is not readable")
        elif not stat.S_ISDIR(info.st_mode):
            problems.append(f"{rel} is not a regular file, folder or symlink")
        scanned.append((rel, info))
    return scanned, problems


class HashCache:
    """File hashes kept between runs, keyed by what changes when a file's bytes change."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.entries: dict[str, list[object]] = {}
        self.used: set[str] = set()
        self.dirty = False
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    self.entries = parse_json(handle.read())
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, path: str, info: os.stat_result) -> str:
        key = [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]
        self.used.add(path)
        hit = self.entries.get(path)
        if hit is not None and hit[:4] == key:
            return str(hit[4])
        digest = _file_digest(path)
        self.entries[path] = [*key, digest]
        self.dirty = True
        return digest

    def save(self) -> None:
        """Write the digests of this pass's files; those of files gone are dropped, so the
        cache (read whole on every pass) never outgrows the context."""
        if len(self.used) != len(self.entries):
            self.entries = {path: self.entries[path] for path in self.used}
            self.dirty = True
        if not (self.path and self.dirty):
            return
        write_json(self.path, self.entries)


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(context: str, cache: HashCache | None = None) -> dict[str, str]:
    """Every entry's mode and content hash; raises ``ContextError`` on a bad context."""
    scanned, problems = _scan(context)
    if problems:
        raise ContextError("; ".join(problems))
    cache = cache or HashCache(None)
    base = os.path.join(os.path.abspath(context), "")  # entries are normalized relative paths
    out = {}
    for rel, info in scanned:
        path = base + rel
        mode = f"{stat.S_IMODE(info.st_mode):o}"
        if stat.S_ISLNK(info.st_mode):
            out[rel] = f"link:{os.readlink(path)}"
        elif stat.S_ISDIR(info.st_mode):
            out[rel] = f"dir:{mode}"
        else:
            try:
                out[rel] = f"file:{mode}:{cache.digest(path, info)}"
            except OSError as err:
                raise ContextError(f"{rel}: {err.strerror}") from err
    return out


def pack(project: str, key: str, spec: Image, cache_dir: str | None = None) -> PackedImage:
    """The tag and manifest of a data-packed image, using the hash cache in ``cache_dir``."""
    cache_file = None
    if cache_dir:
        name = hashlib.sha256(os.path.abspath(spec.context).encode()).hexdigest()[:24]
        cache_file = os.path.join(cache_dir, f"{name}.json")
    cache = HashCache(cache_file)
    files = manifest(spec.context, cache)
    cache.save()
    digest = content_digest(spec.base, spec.path, files)
    return PackedImage(tag=f"{REPOSITORY}/{project}-{key}:{digest}", manifest=files)


def content_digest(base: str, path: str, files: Mapping[str, str]) -> str:
    """The version part of a tag: ``base``, ``path`` and every entry's hash, no mtimes."""
    config = json.dumps([base, path, sorted(files.items())], separators=(",", ":"))
    return hashlib.sha256(config.encode()).hexdigest()[:16]


def dockerfile(base: str, path: str) -> str:
    """The generated Dockerfile, built from checked values and JSON forms, so that no value
    can add a line (the spec checks them too; a saved plan carries them again)."""
    from reconciler.spec.names import is_image_reference

    if base != "scratch" and not is_image_reference(base):
        raise ContextError(f"{base!r} is not an image reference (or scratch)")
    if not path.startswith("/") or has_control(path) or any(c in path for c in "$\\"):
        raise ContextError(f"{path!r} is not an absolute path without control characters")
    copy = json.dumps([f"{_CONTEXT_DIR}/", path.rstrip("/") + "/"])
    return f"FROM {base}\nCOPY {copy}\nVOLUME {json.dumps([path])}\n"


class _HashingReader:
    """Hands a file's bytes to the tarball and hashes exactly those bytes on the way."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha.update(data)
        return data


def write_build_context(context: str, base: str, path: str, out: IO[bytes]) -> str:
    """The tarball ``docker build`` gets: the context's entries and a generated Dockerfile.

    Returns the ``content_digest`` of what went into it, from the bytes written: the context
    may have changed since its tag was computed (a saved plan, an edit during the apply),
    and a build must never carry a tag that names other content.
    """
    files: dict[str, str] = {}
    with tarfile.open(fileobj=out, mode="w") as tar:
        text = dockerfile(base, path).encode()
        info = tarfile.TarInfo(DOCKERFILE)
        info.size = len(text)
        tar.addfile(info, fileobj=io.BytesIO(text))
        folder = tarfile.TarInfo(_CONTEXT_DIR)
        folder.type = tarfile.DIRTYPE
        folder.mode = 0o755
        tar.addfile(folder)
        for rel in entries(context):
            info = tar.gettarinfo(os.path.join(context, rel), arcname=f"{_CONTEXT_DIR}/{rel}")
            mode = f"{stat.S_IMODE(info.mode):o}"
            if info.isreg():
                with open(os.path.join(context, rel), "rb") as handle:
                    reader = _HashingReader(handle)
                    tar.addfile(info, reader)
                files[rel] = f"file:{mode}:{reader.sha.hexdigest()}"
                continue
            tar.addfile(info)
            if info.islnk():  # a hard link to an entry already written: the same file
                files[rel] = files[info.linkname.removeprefix(f"{_CONTEXT_DIR}/")]
            else:
                files[rel] = f"link:{info.linkname}" if info.issym() else f"dir:{mode}"
    return content_digest(base, path, files)
