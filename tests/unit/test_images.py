"""Data-packed images without an engine: the content hash (the tag), its cache, the reasons
a plan gives for a rebuild, and the tarball ``docker build`` gets.

The tag is what decides whether dsr builds: the same content must give the same tag on any
run and whatever the files' mtimes, and any change a build would carry into the image (bytes,
names, modes, symlink targets, files added or removed, ``base``, ``path``) a new one.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import reconciler.images as images
from reconciler.images import (
    DOCKERFILE,
    ContextError,
    context_problems,
    dockerfile,
    entries,
    manifest,
    pack,
    write_build_context,
)
from reconciler.plan import Action, plan
from reconciler.plan.reasons import describe_changes
from reconciler.plan.simulate import simulate
from reconciler.snapshot import LiveContainer, Observed
from reconciler.spec import load_spec
from reconciler.spec.models import Image

PATH = "/usr/local/apache2/htdocs"


def make_context(root: Path) -> Path:
    """A small context: files at two depths, an empty folder, a symlink inside it."""
    ctx = root / "ctx"
    (ctx / "css").mkdir(parents=True)
    (ctx / "empty").mkdir()
    (ctx / "index.html").write_text("<h1>hello</h1>\n")
    (ctx / "css" / "site.css").write_text("body { color: black }\n")
    (ctx / "robots.txt").write_text("User-agent: *\n")
    (ctx / "home.html").symlink_to("index.html")
    return ctx


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return make_context(tmp_path)


def spec(context: Path, *, path: str = PATH, base: str = "scratch") -> Image:
    return Image(context=str(context), path=path, base=base)


def tag_of(context: Path, cache_dir: Path | None = None, **options: str) -> str:
    return pack(
        "web", "htdocs", spec(context, **options), str(cache_dir) if cache_dir else None
    ).tag


# --- the content hash ----------------------------------------------------------------------


def test_tag_names_project_and_key_and_is_stable(ctx: Path, tmp_path: Path) -> None:
    first = tag_of(ctx)
    assert first.startswith("dsr/web-htdocs:")
    assert len(first.rsplit(":", 1)[1]) == 16
    # Another run, with and without a cache, and a copy of the context elsewhere: same tag.
    assert tag_of(ctx) == first
    assert tag_of(ctx, tmp_path / "cache") == first
    assert tag_of(ctx, tmp_path / "cache") == first
    copy = tmp_path / "elsewhere" / "ctx"
    shutil.copytree(ctx, copy, symlinks=True)
    assert tag_of(copy) == first


def test_tag_does_not_depend_on_mtimes(ctx: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    before = tag_of(ctx, cache)
    for path in [ctx, *ctx.rglob("*")]:
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    assert tag_of(ctx, cache) == before
    assert tag_of(ctx) == before


def _write_bytes(ctx: Path) -> None:
    (ctx / "index.html").write_text("<h1>HELLO</h1>\n")  # same size, other bytes


def _rename(ctx: Path) -> None:
    (ctx / "robots.txt").rename(ctx / "robots2.txt")


def _chmod_file(ctx: Path) -> None:
    (ctx / "robots.txt").chmod(0o600)


def _chmod_folder(ctx: Path) -> None:
    (ctx / "css").chmod(0o700)


def _chmod_exec(ctx: Path) -> None:
    (ctx / "robots.txt").chmod(0o755)


def _retarget_link(ctx: Path) -> None:
    (ctx / "home.html").unlink()
    (ctx / "home.html").symlink_to("robots.txt")


def _link_to_file(ctx: Path) -> None:
    (ctx / "home.html").unlink()
    (ctx / "home.html").write_text("<h1>hello</h1>\n")  # the bytes the link led to


def _add_file(ctx: Path) -> None:
    (ctx / "css" / "print.css").write_text("")


def _add_folder(ctx: Path) -> None:
    (ctx / "img").mkdir()


def _remove_file(ctx: Path) -> None:
    (ctx / "css" / "site.css").unlink()


def _remove_empty_folder(ctx: Path) -> None:
    (ctx / "empty").rmdir()


def _move_into_folder(ctx: Path) -> None:
    (ctx / "robots.txt").rename(ctx / "css" / "robots.txt")


@pytest.mark.parametrize(
    "change",
    [
        _write_bytes,
        _rename,
        _chmod_file,
        _chmod_folder,
        _chmod_exec,
        _retarget_link,
        _link_to_file,
        _add_file,
        _add_folder,
        _remove_file,
        _remove_empty_folder,
        _move_into_folder,
    ],
)
def test_a_change_a_build_would_carry_gives_a_new_tag(
    ctx: Path, tmp_path: Path, change: Callable[[Path], None]
) -> None:
    cache = tmp_path / "cache"
    before = tag_of(ctx, cache)
    change(ctx)
    assert tag_of(ctx, cache) != before  # through the cache
    assert tag_of(ctx) != before  # and from scratch


def test_base_and_path_are_part_of_the_tag(ctx: Path) -> None:
    plain = tag_of(ctx)
    assert tag_of(ctx, base="busybox:1.36") != plain
    assert tag_of(ctx, path="/srv/htdocs") != plain
    assert tag_of(ctx, path="/srv/htdocs") != tag_of(ctx, base="busybox:1.36")


def test_files_dockerignore_leaves_out_do_not_count(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("# drafts and logs\n*.log\ndrafts/\n!keep.log\n")
    (ctx / "debug.log").write_text("one\n")
    (ctx / "keep.log").write_text("kept\n")
    (ctx / "drafts").mkdir()
    (ctx / "drafts" / "next.html").write_text("<h1>soon</h1>\n")
    before = tag_of(ctx)
    listed = set(entries(str(ctx)))
    assert {"debug.log", "drafts", "drafts/next.html"}.isdisjoint(listed)
    assert {"keep.log", ".dockerignore", "index.html", "css/site.css"} <= listed

    (ctx / "debug.log").write_text("two, longer\n")
    (ctx / "other.log").write_text("new\n")
    (ctx / "drafts" / "next.html").write_text("<h1>later</h1>\n")
    (ctx / "drafts" / "more.html").write_text("")
    assert tag_of(ctx) == before

    (ctx / "keep.log").write_text("changed\n")  # re-included by !keep.log: it counts
    assert tag_of(ctx) != before


def test_manifest_says_what_each_entry_is(ctx: Path) -> None:
    files = manifest(str(ctx))
    assert files["css"] == "dir:755"
    assert files["home.html"] == "link:index.html"
    kind, mode, digest = files["index.html"].split(":")
    assert (kind, mode, len(digest)) == ("file", "644", 64)
    assert sorted(files) == [
        "css",
        "css/site.css",
        "empty",
        "home.html",
        "index.html",
        "robots.txt",
    ]


def test_a_bad_context_is_refused(ctx: Path) -> None:
    (ctx / "passwd").symlink_to("/etc/passwd")
    (ctx / "css" / "up").symlink_to("../../x")
    os.mkfifo(ctx / "pipe")
    problems = context_problems(str(ctx))
    assert sorted(problems) == [
        "css/up is a symlink to ../../x, outside the context",
        "passwd is a symlink to /etc/passwd, outside the context",
        "pipe is not a regular file, folder or symlink",
    ]
    with pytest.raises(ContextError, match="passwd is a symlink to /etc/passwd"):
        pack("web", "htdocs", spec(ctx))


def test_links_that_stay_inside_are_fine(ctx: Path) -> None:
    (ctx / "css" / "index.html").symlink_to("../index.html")
    (ctx / "here").symlink_to(".")
    (ctx / "dangling").symlink_to("missing.html")  # copied as a link, as docker does
    assert context_problems(str(ctx)) == []


def test_an_ignored_special_file_is_no_problem(ctx: Path) -> None:
    os.mkfifo(ctx / "pipe")
    (ctx / ".dockerignore").write_text("pipe\n")
    assert context_problems(str(ctx)) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file whatever its mode")
def test_unreadable_entries_are_problems(ctx: Path) -> None:
    (ctx / "robots.txt").chmod(0)
    (ctx / "css").chmod(0)
    try:
        assert context_problems(str(ctx)) == ["css is not readable (Permission denied)"]
        (ctx / "css").chmod(0o755)
        assert context_problems(str(ctx)) == ["robots.txt is not readable"]
    finally:
        (ctx / "css").chmod(0o755)
        (ctx / "robots.txt").chmod(0o644)


# --- the hash cache --------------------------------------------------------------------------


@pytest.fixture
def digest_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths ``_file_digest`` reads, in order: a file read is a cache miss."""
    calls: list[str] = []
    real = images._file_digest

    def counting(path: str) -> str:
        calls.append(os.path.relpath(path))
        return real(path)

    monkeypatch.setattr(images, "_file_digest", counting)
    return calls


def test_cache_reuses_digests_when_nothing_changed(
    ctx: Path, tmp_path: Path, digest_calls: list[str]
) -> None:
    cache = tmp_path / "cache"
    first = tag_of(ctx, cache)
    assert len(digest_calls) == 3  # index.html, robots.txt, css/site.css: links are not read
    digest_calls.clear()
    assert tag_of(ctx, cache) == first
    assert digest_calls == []
    # A context's cache is one JSON file under the cache folder.
    assert len(list(cache.iterdir())) == 1


def test_cache_reads_only_what_changed(ctx: Path, tmp_path: Path, digest_calls: list[str]) -> None:
    cache = tmp_path / "cache"
    tag_of(ctx, cache)
    digest_calls.clear()
    (ctx / "robots.txt").write_text("User-agent: none\n")
    (ctx / "css" / "new.css").write_text("")
    tag_of(ctx, cache)
    assert sorted(os.path.basename(p) for p in digest_calls) == ["new.css", "robots.txt"]


def test_cache_notices_a_rewrite_that_kept_size_and_mtime(
    ctx: Path, tmp_path: Path, digest_calls: list[str]
) -> None:
    """A file rewritten in place with bytes of the same length and its mtime put back with
    ``os.utime``: size, mtime and inode are as the cache recorded them. Only the ctime shows
    the change (the kernel sets it on every write and on ``utime`` itself, and no call sets
    it back), so the cache key's ctime is what makes dsr read the file again and find new
    content. A key of (size, mtime) alone, as some build tools use, would keep the old
    digest and the old tag: the image would silently not be rebuilt."""
    cache = tmp_path / "cache"
    target = ctx / "index.html"
    before = tag_of(ctx, cache)
    old = os.stat(target)
    recorded = json.loads(next(cache.iterdir()).read_text())[str(target)]
    assert recorded[:4] == [old.st_size, old.st_mtime_ns, old.st_ino, old.st_ctime_ns]

    with open(target, "r+b") as handle:  # in place: the inode stays
        handle.write(b"<h1>HELLO</h1>\n")
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))
    new = os.stat(target)
    assert (new.st_size, new.st_mtime_ns, new.st_ino) == (old.st_size, old.st_mtime_ns, old.st_ino)
    assert new.st_ctime_ns != old.st_ctime_ns

    digest_calls.clear()
    after = tag_of(ctx, cache)
    assert digest_calls == [os.path.relpath(target)]
    assert after != before
    assert after == tag_of(ctx)  # what a cold hash says


def test_cache_notices_a_file_replaced_by_rename(
    ctx: Path, tmp_path: Path, digest_calls: list[str]
) -> None:
    """Editors often save by writing a new file and renaming it over the old one: a new
    inode, which the cache key also holds."""
    cache = tmp_path / "cache"
    target = ctx / "index.html"
    before = tag_of(ctx, cache)
    old = os.stat(target)
    spare = ctx / ".index.html.swp"
    spare.write_text("<h1>HELLO</h1>\n")
    os.utime(spare, ns=(old.st_atime_ns, old.st_mtime_ns))
    spare.rename(target)
    assert os.stat(target).st_ino != old.st_ino
    digest_calls.clear()
    assert tag_of(ctx, cache) != before
    assert digest_calls == [os.path.relpath(target)]


def test_touching_misses_the_cache_but_keeps_the_tag(
    ctx: Path, tmp_path: Path, digest_calls: list[str]
) -> None:
    cache = tmp_path / "cache"
    before = tag_of(ctx, cache)
    os.utime(ctx / "index.html")
    digest_calls.clear()
    assert tag_of(ctx, cache) == before
    assert digest_calls == [os.path.relpath(ctx / "index.html")]
    digest_calls.clear()
    assert tag_of(ctx, cache) == before
    assert digest_calls == []  # the new stat was recorded


def test_a_damaged_cache_file_is_ignored(
    ctx: Path, tmp_path: Path, digest_calls: list[str]
) -> None:
    cache = tmp_path / "cache"
    before = tag_of(ctx, cache)
    cache_file = next(cache.iterdir())
    cache_file.write_text("{not json")
    digest_calls.clear()
    assert tag_of(ctx, cache) == before
    assert len(digest_calls) == 3
    json.loads(cache_file.read_text())  # rewritten whole


def test_cache_forgets_files_that_are_gone(ctx: Path, tmp_path: Path) -> None:
    """The cache file is read whole on every pass: it must not keep the digests of every
    file the context ever held."""
    cache = tmp_path / "cache"
    tag_of(ctx, cache)
    (ctx / "robots.txt").rename(ctx / "robots-2.txt")
    tag_of(ctx, cache)
    recorded = json.loads(next(cache.iterdir()).read_text())
    assert sorted(os.path.relpath(p, ctx) for p in recorded) == [
        os.path.join("css", "site.css"),
        "index.html",
        "robots-2.txt",
    ]


def test_no_cache_dir_means_no_cache(ctx: Path, digest_calls: list[str]) -> None:
    tag_of(ctx)
    tag_of(ctx)
    assert len(digest_calls) == 6


# --- reasons ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (None, {"a": "1"}, "its context changed"),
        (
            {"index.html": "file:644:1"},
            {"index.html": "file:644:2"},
            "1 entry changed (index.html)",
        ),
        (
            {"a": "1", "b": "1", "c": "1"},
            {"a": "2", "b": "2", "c": "1"},
            "2 entries changed (a, b)",
        ),
        (
            {"a": "1", "b": "1", "c": "1", "d": "1"},
            {"a": "2", "b": "2", "c": "2", "d": "2"},
            "4 entries changed (a, b, c, …)",
        ),
        ({"a": "1"}, {"a": "1", "b": "1"}, "1 entry added (b)"),
        ({"a": "1", "b": "1"}, {"a": "1"}, "1 entry removed (b)"),
        (
            {"a": "1", "gone": "1", "old": "1"},
            {"a": "2", "new": "1"},
            "1 entry changed (a), 1 entry added (new), 2 entries removed (gone, old)",
        ),
        ({"a": "1"}, {"a": "1"}, "its build settings changed"),
    ],
)
def test_describe_changes_wording(
    old: dict[str, str] | None, new: dict[str, str], expected: str
) -> None:
    assert describe_changes(old, new) == expected


def test_describe_changes_of_real_manifests(ctx: Path) -> None:
    before = manifest(str(ctx))
    (ctx / "index.html").write_text("<h1>new</h1>\n")
    (ctx / "robots.txt").chmod(0o600)
    (ctx / "css" / "print.css").write_text("")
    (ctx / "home.html").unlink()
    assert describe_changes(before, manifest(str(ctx))) == (
        "2 entries changed (index.html, robots.txt), 1 entry added (css/print.css), "
        "1 entry removed (home.html)"
    )


# --- the build context -----------------------------------------------------------------------


def build_context(ctx: Path, base: str = "scratch", path: str = PATH) -> tarfile.TarFile:
    buffer = io.BytesIO()
    write_build_context(str(ctx), base, path, buffer)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r")


def written_digest(ctx: Path, base: str = "scratch", path: str = PATH) -> str:
    return write_build_context(str(ctx), base, path, io.BytesIO())


def test_build_context_holds_the_dockerfile_and_the_entries(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("robots.txt\n")
    (ctx / "index.html").chmod(0o640)
    with build_context(ctx, base="scratch", path=PATH) as tar:
        names = tar.getnames()
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile(DOCKERFILE)
        assert dockerfile is not None
        assert dockerfile.read().decode() == (
            f'FROM scratch\nCOPY ["context/", "{PATH}/"]\nVOLUME ["{PATH}"]\n'
        )
        index = tar.extractfile("context/index.html")
        assert index is not None
        assert index.read() == b"<h1>hello</h1>\n"
    assert list(members)[:2] == [DOCKERFILE, "context"]
    assert sorted(members) == sorted(
        [
            DOCKERFILE,
            "context",
            "context/.dockerignore",
            "context/css",
            "context/css/site.css",
            "context/empty",
            "context/home.html",
            "context/index.html",
        ]
    )
    assert members["context"].isdir()
    assert members["context/empty"].isdir()
    assert members["context/home.html"].issym()
    assert members["context/home.html"].linkname == "index.html"
    assert stat.S_IMODE(members["context/index.html"].mode) == 0o640
    # Each entry once: folders are added without recursion, their entries one by one.
    assert len(names) == len(set(names))


def test_build_context_dockerfile_uses_base_and_path(ctx: Path) -> None:
    with build_context(ctx, base="dsr-test/busybox:1", path="/srv/www") as tar:
        dockerfile = tar.extractfile(DOCKERFILE)
        assert dockerfile is not None
        assert dockerfile.read().decode().splitlines() == [
            "FROM dsr-test/busybox:1",
            'COPY ["context/", "/srv/www/"]',
            'VOLUME ["/srv/www"]',
        ]


@pytest.mark.parametrize(
    ("base", "path"),
    [
        ("scratch\nRUN id", "/srv"),
        ("busybox", "/srv\nRUN rm -rf /"),
        ("busybox", "/srv/$HOME"),
        ("busybox", "srv"),
        ("busybox", "/srv\\\nRUN id"),
        ("", "/srv"),
    ],
)
def test_dockerfile_refuses_values_that_would_add_lines(base: str, path: str) -> None:
    with pytest.raises(ContextError):
        dockerfile(base, path)


# --- containers made from a build outside dsr -------------------------------------------------


def test_a_container_made_by_hand_from_a_build_is_not_dsrs(tmp_path: Path) -> None:
    """Docker copies an image's labels into the containers made from it, so ``docker run``
    of a data-packed build gives a container labelled dsr.managed=true, dsr.project and
    dsr.kind=image. The planner must not take it for one of its own: not an orphan to
    delete, not a container of the spec to replace."""
    folder = tmp_path / "web"
    make_context(folder)
    (folder / "dsr.yaml").write_text(
        "version: 1\n"
        "images:\n"
        f"  htdocs: {{context: ./ctx, path: {PATH}}}\n"
        "volume_containers:\n"
        "  vc: {image: htdocs}\n"
        "containers:\n"
        "  app: {image: busybox:1.36, volumes_from: [vc]}\n"
    )
    desired = load_spec(str(folder / "dsr.yaml"))
    tags = {"htdocs": pack(desired.project, "htdocs", desired.images["htdocs"]).tag}
    converged = simulate(desired, tags)
    build = converged.images[tags["htdocs"]]
    assert build.labels["dsr.managed"] == "true" and build.labels["dsr.kind"] == "image"
    assert plan(desired, converged, tags).changes == ()

    def by_hand(name: str) -> LiveContainer:
        return LiveContainer(
            id=f"{name}-id",
            name=name,
            image=tags["htdocs"],
            image_id=build.id,
            state="running",
            labels={**build.labels, "purpose": "looking around"},
        )

    with_shell = dataclasses.replace(
        converged, containers={**converged.containers, "shell": by_hand("shell")}
    )
    assert plan(desired, with_shell, tags).changes == ()

    # The same, under the name of a container of the spec: a name taken, not dsr's own.
    taken = {**converged.containers, "app": by_hand("app")}
    changes = plan(desired, Observed(taken, converged.volumes, converged.images), tags).changes
    assert [(c.resource, c.action) for c in changes] == [("container:app", Action.BLOCKED)]
    assert "dsr did not create it" in changes[0].reason


def test_build_context_says_what_content_it_holds(ctx: Path, tmp_path: Path) -> None:
    """The applier compares this with the tag it is asked to build: a context edited after
    the plan (a saved plan applied later, an edit during the apply) must not be built under
    a tag that names other content; reverting the edit would then find that tag and serve
    the wrong files."""
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / "debug.log").write_text("ignored\n")
    os.link(ctx / "robots.txt", ctx / "css" / "robots.txt")  # a hard link: the same file
    tag = tag_of(ctx, tmp_path / "cache")
    assert tag.endswith(":" + written_digest(ctx))
    assert not tag.endswith(":" + written_digest(ctx, base="busybox:1.36"))
    assert not tag.endswith(":" + written_digest(ctx, path="/srv"))

    (ctx / "index.html").write_text("<h1>HELLO</h1>\n")
    assert not tag.endswith(":" + written_digest(ctx))
    assert tag_of(ctx, tmp_path / "cache").endswith(":" + written_digest(ctx))
