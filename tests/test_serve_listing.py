"""Directory listings: escaping, links, hidden dotfiles, ordering."""

from __future__ import annotations

import os
from pathlib import Path

from zcopy.serve.listing import Entry, render, scan


def test_scan_hides_dotfiles_and_sorts_dirs_first(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", ".secret"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "zdir").mkdir()
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    assert [e.name for e in scan(str(tmp_path))] == ["zdir", "a.txt", "b.txt"]
    assert ".secret" in [e.name for e in scan(str(tmp_path), dotfiles=True)]


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
    page = render("/", scan(str(tmp_path))).decode()
    assert 'href="caf%E9.txt"' in page
