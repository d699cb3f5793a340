"""Directory listings: escaping, links, hidden dotfiles, ordering."""

from __future__ import annotations

import os
from pathlib import Path

from zcopy.serve.listing import Entry, render, scan


def follow(dir_fd: int, entry: os.DirEntry[str]) -> os.stat_result | None:
    return entry.stat()


def names(root: Path, **kw: bool) -> list[str]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return [e.name for e in scan(fd, follow, **kw)]
    finally:
        os.close(fd)


def test_scan_hides_dotfiles_and_sorts_dirs_first(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", ".secret"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "zdir").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    assert names(tmp_path) == ["zdir", "a.txt", "b.txt"]
    assert ".secret" in names(tmp_path, dotfiles=True)


def test_scan_reads_the_fd_not_the_name(tmp_path: Path) -> None:
    """The directory is renamed away after it was opened: the listing is still its own."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "mine.txt").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "theirs.txt").write_bytes(b"x")
    fd = os.open(tmp_path / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rename(tmp_path / "d", tmp_path / "moved")
        os.rename(tmp_path / "other", tmp_path / "d")
        assert [e.name for e in scan(fd, follow)] == ["mine.txt"]
        assert [e.name for e in scan(fd, follow)] == ["mine.txt"]  # rewound, reusable
    finally:
        os.close(fd)


def test_check_leaves_entries_out(tmp_path: Path) -> None:
    for name in ("keep", "drop"):
        (tmp_path / name).write_bytes(b"x")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        listed = scan(fd, lambda d, e: None if e.name == "drop" else e.stat())
    finally:
        os.close(fd)
    assert [e.name for e in listed] == ["keep"]


def test_render_escapes_everything() -> None:
    evil = '"><script>alert(1)</script>'
    page = render("/a%20b/", [Entry(evil, False, 10, 0), Entry("d&d", True, 0, 0)]).decode()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert 'href="%22%3E%3Cscript%3Ealert%281%29%3C/script%3E"' in page
    assert 'href="d%26d/"' in page and ">d&amp;d/<" in page
    assert "<title>Index of /a b/</title>" in page
    assert 'href="../"' in page


def test_render_root_has_no_parent_link() -> None:
    assert b'href="../"' not in render("/", [])


def test_undecodable_names_round_trip(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes, not UTF-8
    (tmp_path / name).write_bytes(b"x")
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        page = render("/", scan(fd, follow)).decode()
    finally:
        os.close(fd)
    assert 'href="caf%E9.txt"' in page
