"""Opening under the root (symlinks, FIFOs, devices) and the fd / header caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zcopy.serve.files import MetaCache, OpenFiles, Refused, open_under, sidecar_path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.txt").write_bytes(b"no")
    (root / "in.txt").write_bytes(b"yes")
    (root / "in.txt.gz").write_bytes(b"gz")
    os.symlink(tmp_path / "outside.txt", root / "out-link")
    os.symlink(root / "in.txt", root / "in-link")
    os.symlink(tmp_path, root / "dir-link")
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize(
    ("name", "follow", "status"),
    [
        ("out-link", False, 404),
        ("dir-link/outside.txt", False, 404),
        ("missing", False, 404),
        ("in.txt/x", False, 404),
        ("fifo", False, 403),
        ("fifo", True, 403),
    ],
)
def test_refused(tree: Path, no_fd_leak: None, name: str, follow: bool, status: int) -> None:
    with pytest.raises(Refused) as info:
        open_under(str(tree), str(tree / name), follow)
    assert info.value.status == status


@pytest.mark.parametrize(
    ("name", "follow"),
    [("in.txt", False), ("in-link", False), ("out-link", True), ("dir-link/outside.txt", True)],
)
def test_opened(tree: Path, no_fd_leak: None, name: str, follow: bool) -> None:
    fd, st = open_under(str(tree), str(tree / name), follow)
    try:
        assert os.read(fd, 10) in (b"yes", b"no") and st.st_size in (2, 3)
    finally:
        os.close(fd)


def test_device_refused(no_fd_leak: None) -> None:
    with pytest.raises(Refused) as info:
        open_under("/", "/dev/null", True)
    assert info.value.status == 403


def test_open_files_shares_and_expires(tree: Path, no_fd_leak: None) -> None:
    cache = OpenFiles(str(tree), follow_symlinks=False, ttl=1.0)
    h1, _ = cache.acquire(str(tree / "in.txt"), 0.0)
    h2, _ = cache.acquire(str(tree / "in.txt"), 0.5)
    assert h1 is h2
    cache.release(h1)
    cache.release(h2)
    h3, _ = cache.acquire(str(tree / "in.txt"), 2.0)  # expired: a fresh open
    assert h3 is not h1
    cache.purge(10.0)  # the cache lets go; the holder still has a working fd
    assert os.pread(h3.fd, 3, 0) == b"yes"
    cache.release(h3)
    with pytest.raises(OSError):
        os.fstat(h3.fd)


def test_open_files_in_use_survive_clear(tree: Path, no_fd_leak: None) -> None:
    cache = OpenFiles(str(tree), follow_symlinks=False)
    h, _ = cache.acquire(str(tree / "in.txt"), 0.0)
    cache.clear()
    assert os.pread(h.fd, 3, 0) == b"yes"
    cache.release(h)


def test_directories_are_not_cached(tree: Path, no_fd_leak: None) -> None:
    cache = OpenFiles(str(tree), follow_symlinks=False)
    h, st = cache.acquire(str(tree), 0.0)
    assert h.file is None and st.st_nlink >= 2
    cache.release(h)
    h2, _ = cache.acquire(str(tree), 0.0)
    assert h2 is not h  # not kept: a directory is opened per request
    cache.release(h2)


def test_open_files_bounded(tree: Path, no_fd_leak: None) -> None:
    for i in range(5):
        (tree / f"f{i}").write_bytes(b"x")
    cache = OpenFiles(str(tree), follow_symlinks=False, max_entries=2)
    for i in range(5):
        h, _ = cache.acquire(str(tree / f"f{i}"), 0.0)
        cache.release(h)
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")]
    assert sorted(os.path.basename(p) for p in held if p.startswith(str(tree))) == ["f3", "f4"]
    cache.clear()


def test_meta_follows_the_file(tree: Path) -> None:
    path = str(tree / "in.txt")
    metas = MetaCache()
    m1 = metas.get(path, os.stat(path), "", 0.0, sidecars=True)
    assert m1.sidecars == ("gzip",) and b"Vary: Accept-Encoding" in m1.fields
    assert metas.get(path, os.stat(path), "", 0.5, sidecars=True) is m1
    (tree / "in.txt").write_bytes(b"changed!")
    m2 = metas.get(path, os.stat(path), "", 0.5, sidecars=True)
    assert m2.etag != m1.etag  # identity changed: never stale headers
    gz = sidecar_path(path, "gzip")
    coded = metas.get(gz, os.stat(gz), "gzip", 0.5, sidecars=False)
    assert coded.ctype == "text/plain; charset=utf-8"
    assert b"Content-Encoding: gzip" in coded.fields and coded.etag.endswith('-gzip"')


@pytest.fixture
def dotted(tree: Path) -> Path:
    (tree / ".env").write_bytes(b"SECRET=1")
    (tree / ".git").mkdir()
    (tree / ".git" / "config").write_bytes(b"[core]")
    os.symlink(".env", tree / "envlink")
    os.symlink(".git", tree / "gitlink")
    os.symlink(".git/config", tree / "configlink")
    return tree


@pytest.mark.parametrize("name", ["envlink", "gitlink", "gitlink/config", "configlink"])
def test_dotfile_hidden_by_its_resolved_name(dotted: Path, no_fd_leak: None, name: str) -> None:
    with pytest.raises(Refused) as info:
        open_under(str(dotted), str(dotted / name), False)
    assert info.value.status == 404
    fd, _ = open_under(str(dotted), str(dotted / name), False, dotfiles=True)
    os.close(fd)


def test_listing_shows_only_what_a_get_serves(dotted: Path, no_fd_leak: None) -> None:
    os.symlink("nowhere", dotted / "dangling")
    (dotted / "sub").mkdir()
    fd = os.open(dotted, os.O_RDONLY)
    try:
        listed = {e.name: e for e in OpenFiles(str(dotted), follow_symlinks=False).list_dir(fd)}
        followed = OpenFiles(str(dotted), follow_symlinks=True, dotfiles=True).list_dir(fd)
    finally:
        os.close(fd)
    # out-link and dir-link leave the root, envlink & co. resolve to dotfiles, fifo is 403
    assert sorted(listed) == ["in-link", "in.txt", "in.txt.gz", "sub"]
    assert listed["in-link"].size == 3 and listed["sub"].is_dir
    assert {e.name for e in followed} >= {"out-link", "dir-link", "envlink", ".env", "gitlink"}


def test_out_of_fds_is_503_not_404(tree: Path) -> None:
    """EMFILE means "try again", never "no such file" (a 404 would be cached)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        with pytest.raises(OSError):
            while True:
                held.append(os.open("/dev/null", os.O_RDONLY))
        with pytest.raises(Refused) as info:
            open_under(str(tree), str(tree / "in.txt"), False)
        cache = OpenFiles(str(tree), follow_symlinks=False)
        os.close(held.pop())  # room for the directory fd, none for scandir's dup
        dir_fd = os.open(tree, os.O_RDONLY)
        with pytest.raises(Refused) as listed:
            cache.list_dir(dir_fd)
        os.close(dir_fd)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert (info.value.status, info.value.fields) == (503, b"Retry-After: 1\r\n")
    assert listed.value.status == 503

