"""Path safety: a traversal corpus on the pure resolver, and a subset against a live server."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_util import ServeProc, raw_request

from zcopy.serve.paths import BadTarget, parse_target, within_root

# Attack request-targets: every one must be refused or land inside the root.
ATTACKS = [
    "/../etc/passwd",
    "/../../../../etc/passwd",
    "/a/../../etc/passwd",
    "/%2e%2e/etc/passwd",
    "/%2E%2E/etc/passwd",
    "/%2e%2e%2fetc%2fpasswd",
    "/%2e%2e%5cetc%5cpasswd",
    "/..%2fetc%2fpasswd",
    "/..%2Fetc/passwd",
    "/..%5c..%5cetc/passwd",
    "/..\\..\\etc\\passwd",
    "/.%2e/etc/passwd",
    "/%2e./etc/passwd",
    "/a/%2e%2e/%2e%2e/etc/passwd",
    "/a/b/../../../etc/passwd",
    "/./../etc/passwd",
    "/a/./../../etc/passwd",
    "/%252e%252e/etc/passwd",  # double-encoded: stays a literal '%2e%2e' name
    "/%c0%ae%c0%ae/etc/passwd",  # overlong UTF-8 dots are not dots
    "/%uff0e%uff0e/etc/passwd",
    "/etc/passwd%00.txt",
    "/a.txt%00",
    "/%00",
    "/a%0d%0aSet-Cookie:x",
    "/a%0aX",
    "/a%09b",
    "/a%7fb",
    "/%2fetc/passwd",
    "//etc/passwd",
    "///etc//passwd",
    "/a%2f..%2f..%2fetc",
    "/a%5c..%5c..",
    "http://evil/../etc/passwd",
    "http://evil/%2e%2e/etc/passwd",
    "HTTP://evil/..%2f..%2fetc/passwd",
    "https://evil/../../etc/passwd",
    "http://evil",
    "etc/passwd",
    "../etc/passwd",
    "*",
    "",
    "/.git/config",
    "/.env",
    "/a/.ssh/id_rsa",
    "/%2egit/config",
    "/.%2e",
    "/..",
    "/..;/etc/passwd",
    "/..%00/etc/passwd",
    "/%",
    "/%2",
    "/%zz",
    "/a%2",
    "/..?x=1",
    "/..#frag",
    "/%2e%2e?../../x",
    "/\\..\\..\\etc\\passwd",
    "/a/b/c/../../../../",
]


def _safe(segments: tuple[str, ...]) -> bool:
    for seg in segments:
        if seg in ("", ".", "..") or seg.startswith("."):
            return False
        if "/" in seg or "\\" in seg or any(ord(c) < 0x20 or c == "\x7f" for c in seg):
            return False
    return True


@pytest.mark.parametrize("target", ATTACKS)
def test_attack_refused_or_contained(target: str) -> None:
    try:
        t = parse_target(target)
    except BadTarget as bad:
        assert bad.status in (400, 404)
        return
    assert _safe(t.segments), t
    # Joined under a root, the path never leaves it (no symlinks involved here).
    root = "/srv/root"
    joined = os.path.normpath(os.path.join(root, t.relpath))
    assert within_root(root, joined)


PARSED = [
    ("/", (), True, ""),
    ("/a", ("a",), False, ""),
    ("/a/", ("a",), True, ""),
    ("/a/b/../c", ("a", "c"), False, ""),
    ("/a/./b", ("a", "b"), False, ""),
    ("/a%20b", ("a b",), False, ""),
    ("/caf%C3%A9", ("café",), False, ""),
    ("/a?x=1&y=/../", ("a",), False, "x=1&y=/../"),
    ("/a#frag", ("a",), False, ""),
    ("http://host/a/b", ("a", "b"), False, ""),
    ("http://host?q", (), True, "q"),
    ("/a/..", (), True, ""),
    ("/%252e%252e", ("%2e%2e",), False, ""),
]


@pytest.mark.parametrize(("target", "segments", "slash", "query"), PARSED)
def test_parse_target(target: str, segments: tuple[str, ...], slash: bool, query: str) -> None:
    t = parse_target(target)
    assert (t.segments, t.slash, t.query) == (segments, slash, query)


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/../x", 400),
        ("/%2e%2e/x", 400),
        ("/a%2fb", 400),
        ("/a%5cb", 400),
        ("/a%00", 400),
        ("/%zz", 400),
        ("x", 400),
        ("/.hidden", 404),
        ("/a/.hidden/b", 404),
    ],
)
def test_refusal_status(target: str, status: int) -> None:
    with pytest.raises(BadTarget) as info:
        parse_target(target)
    assert info.value.status == status


def test_dotfiles_allowed_when_asked() -> None:
    assert parse_target("/.well-known/x", dotfiles=True).segments == (".well-known", "x")
    with pytest.raises(BadTarget):
        parse_target("/../x", dotfiles=True)


def test_non_ascii_target_refused() -> None:
    with pytest.raises(BadTarget):
        parse_target("/caf\xe9".encode("latin-1"))


@pytest.mark.parametrize(
    ("root", "real", "inside"),
    [
        ("/srv", "/srv", True),
        ("/srv", "/srv/a/b", True),
        ("/srv", "/srvx", False),
        ("/srv", "/", False),
        ("/srv/", "/srv/a", True),
        ("/", "/etc", True),
    ],
)
def test_within_root(root: str, real: str, inside: bool) -> None:
    assert within_root(root, real) is inside


# --- end to end ------------------------------------------------------------------------

SECRET = b"TOP-SECRET-OUTSIDE-ROOT"


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("jail")
    (base / "secret.txt").write_bytes(SECRET)
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "ok.txt").write_bytes(b"fine\n")
    (root / ".hidden").write_bytes(SECRET)
    (root / "sub" / ".env").write_bytes(SECRET)
    os.symlink(base / "secret.txt", root / "escape.txt")
    os.symlink(base, root / "up")
    os.symlink(root / "ok.txt", root / "inside-link.txt")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture(scope="module")
def server(jail: Path) -> Iterator[ServeProc]:
    with ServeProc(jail) as proc:
        yield proc


E2E = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/..%5csecret.txt",
    "/sub/../../secret.txt",
    "/sub/%2e%2e/%2e%2e/secret.txt",
    "http://x/../secret.txt",
    "/escape.txt",
    "/up/secret.txt",
    "/up/root/../secret.txt",
    "/.hidden",
    "/sub/.env",
    "/%2ehidden",
    "/ok.txt%00",
    "//..//secret.txt",
    "/\\..\\secret.txt",
]


@pytest.mark.parametrize("target", E2E)
def test_live_server_never_leaks(server: ServeProc, target: str) -> None:
    status, _, body = raw_request(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status in (400, 403, 404), (target, status)
    assert SECRET not in body


def test_live_server_serves_inside(server: ServeProc) -> None:
    for target in ("/ok.txt", "/inside-link.txt", "/sub/../ok.txt", "/%6fk.txt"):
        status, _, body = raw_request(server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"fine\n"), target


def test_fifo_does_not_hang(server: ServeProc) -> None:
    status, _, _ = raw_request(server.port, "GET /fifo HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 403


def test_follow_symlinks_serves_outside_links(jail: Path) -> None:
    with ServeProc(jail, "--follow-symlinks") as proc:
        status, _, body = raw_request(proc.port, "GET /escape.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, SECRET)
        # Still never by '..' in the URL.
        status, _, body = raw_request(proc.port, "GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400 and SECRET not in body


def test_show_dotfiles(jail: Path) -> None:
    with ServeProc(jail, "--show-dotfiles") as proc:
        status, _, body = raw_request(proc.port, "GET /.hidden HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, SECRET)


def test_raw_socket_helper_sees_close(server: ServeProc) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /ok.txt HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"fine\n")
