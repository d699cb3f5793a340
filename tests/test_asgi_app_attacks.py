"""zcopy.asgi attacked: a racing file system, careless callers and hostile requests.

Each test here failed before the fix it guards (see the commit that added it).
Real files throughout; real servers (``zcopy serve --app``, uvicorn) where the
bug needs one.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from asgi_fake import BOTH, Uvicorn, run_app
from asgi_util import TESTS, request, start

from zcopy.asgi import Delivery, FileResponse, StaticFiles
from zcopy.asgi.types import PATHSEND, Message

SECRET = b"TOP SECRET: the key is 0123456789abcdef\n"
PUBLIC = b"public bytes\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``site/victim.txt`` to serve, and ``secret.txt`` beside (outside) the site."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "victim.txt").write_bytes(PUBLIC)
    (tmp_path / "secret.txt").write_bytes(SECRET)
    return tmp_path


def _restore(tree: Path) -> None:
    victim = tree / "site" / "victim.txt"
    if victim.is_symlink():
        victim.unlink()
    victim.write_bytes(PUBLIC)


# --- StaticFiles: a path the checks never saw must not reach the server -------------------


def test_static_pathsend_never_reopens_a_path_swapped_for_a_symlink(tree: Path) -> None:
    """pathsend makes the server open the *path* again, after the fd-based containment check.

    Before the fix, ``without_extensions(StaticFiles(...))`` (the documented rescue
    behind GZip) under ``zcopy serve --app`` sent a file outside the directory when
    a symlink was swapped in between the app's check and the server's open.
    """
    with start(tree, "asgi_app_attack_apps:static_pathsend", "--factory") as server:
        for _ in range(3):
            _restore(tree)
            resp, body = request(server.port, "GET", "/victim.txt")
            assert b"SECRET" not in body and SECRET[: len(PUBLIC)] != body
            assert resp.status == 200 and body == PUBLIC


def test_static_whole_file_with_pathsend_only_takes_the_read_loop(tree: Path) -> None:
    got = run_app(StaticFiles(tree / "site"), "/victim.txt", extensions={PATHSEND: {}})
    assert got.body == PUBLIC and PATHSEND not in got.kinds
    # Nothing to bypass when symlinks may lead anywhere and dotfiles are shown: pathsend.
    trusting = StaticFiles(tree / "site", follow_symlinks=True, dotfiles=True)
    got = run_app(trusting, "/victim.txt", extensions={PATHSEND: {}})
    assert got.kinds == ["http.response.start", PATHSEND] and got.body == PUBLIC


def test_file_response_records_the_reopen_road(tree: Path) -> None:
    """FileResponse follows symlinks by design: pathsend stays its whole-file road."""
    response = FileResponse(tree / "site" / "victim.txt")
    run_app(response, extensions={PATHSEND: {}})
    assert response.delivery is Delivery.PATHSEND


# --- Header injection: a caller's string never becomes a header line of its own -----------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"media_type": "text/plain\r\nSet-Cookie: pwned=1"},
        {"headers": {"Content-Type": "text/plain\r\nSet-Cookie: pwned=1"}},
        {"headers": {"ETag": '"v1"\r\nSet-Cookie: pwned=1'}},
        {"headers": {"X-Note": "fine\r\nSet-Cookie: pwned=1"}},
        {"headers": {"X-Note": "nul\x00"}},
        {"headers": {"Bad Name": "v"}},
        {"filename": "a.txt", "content_disposition_type": "inline\r\nSet-Cookie: pwned=1"},
    ],
)
def test_control_characters_in_caller_strings_are_refused(
    tree: Path, kwargs: dict[str, object]
) -> None:
    """media_type and an ETag went into the planner's header *lines*: CRLF split them into a
    header of the caller's choosing, past every server's CR/LF check."""
    with pytest.raises(ValueError, match="FileResponse"):
        FileResponse(tree / "site" / "victim.txt", **kwargs)  # type: ignore[arg-type]


def test_tab_and_non_ascii_names_are_still_allowed(tree: Path) -> None:
    response = FileResponse(
        tree / "site" / "victim.txt", media_type="text/plain;\tcharset=latin-1",
        headers={"X-Note": "a\tb"}, filename="r\u00e9sum\u00e9.txt",
    )
    got = run_app(response)
    assert got.status == 200 and got.body == PUBLIC
    assert got.headers["x-note"] == "a\tb" and "filename*=UTF-8''r%C3%A9" in got.headers[
        "content-disposition"]


def test_redirect_query_cannot_add_a_header(tree: Path) -> None:
    """The directory redirect copies the query into Location, bytes as the server gave them."""
    (tree / "site" / "sub").mkdir()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/sub", "raw_path": b"/sub", "root_path": "",
        "query_string": b"a=1\r\nSet-Cookie: pwned=1&b=\xe9 x", "headers": [],
    }
    asyncio.run(asyncio.wait_for(StaticFiles(tree / "site")(scope, _never, send), 10))
    head = sent[0]
    assert head["status"] == 301
    headers = head["headers"]
    assert isinstance(headers, list)
    assert [name for name, _ in headers].count(b"set-cookie") == 0
    assert dict(headers)[b"location"] == b"/sub/?a=1%0D%0ASet-Cookie:%20pwned=1&b=%E9%20x"


async def _never() -> Message:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


# --- A status that never carries content gets none -----------------------------------------


def _pipelined(port: int, first: str, then: str) -> bytes:
    """Two requests on one connection, everything the server says until it is quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {first} HTTP/1.1\r\nHost: t\r\n\r\nGET {then} HTTP/1.1\r\nHost: t\r\n"
                  "Connection: close\r\n\r\n".encode())
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


@pytest.mark.parametrize("status", [204, 304])
def test_status_without_content_sends_no_body_to_be_read_as_the_next_response(
    tree: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """``FileResponse(path, status_code=304)`` sent Content-Length and the file: uvicorn
    (httptools) wrote both, and a keep-alive client, which reads no body after a 304 or
    204 (RFC 9112 §6.3), took the file's bytes for the start of the next response."""
    monkeypatch.setenv("ZCOPY_TEST_ROOT", str(tree))
    with Uvicorn(TESTS, "asgi_app_attack_apps:no_content") as server:
        got = _pipelined(server.port, f"/?{status}", "/?200")
    head, sep, rest = got.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 %d " % status), got
    assert b"content-length" not in head.lower()
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:40]
    assert rest.endswith(b"\r\n\r\n" + PUBLIC)
    if status == 304:
        assert b"etag: " in head.lower()  # a 304 repeats the validators


def test_head_of_a_status_without_content(tree: Path) -> None:
    response = FileResponse(tree / "site" / "victim.txt", status_code=204)
    for verb in ("GET", "HEAD"):
        got = run_app(response, method=verb, extensions=BOTH)
        assert got.status == 204 and got.body == b"" and "content-length" not in got.headers
        assert response.delivery is Delivery.NO_BODY


# --- Ranges against RFC 9110 ---------------------------------------------------------------


@pytest.mark.parametrize("road", [BOTH, {}])
def test_suffix_range_of_an_empty_file_is_the_empty_file_not_416(tmp_path: Path, road: Any) -> None:
    """RFC 9110 §14.1.1: of a zero-length representation, a suffix-range with a non-zero
    length is the one satisfiable form; it names no byte, so the whole (empty) file answers.
    (A tail -c of an empty log was a 416 with ``Content-Range: bytes */0``.)"""
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    for app in (FileResponse(empty), StaticFiles(tmp_path)):
        got = run_app(app, "/empty.log", headers={"range": "bytes=-500"}, extensions=road)
        assert got.status == 200 and got.body == b"" and got.headers["content-length"] == "0"
        # The forms that are not satisfiable stay 416.
        for spec in ("bytes=0-", "bytes=-0", "bytes=0-0,-0"):
            got = run_app(app, "/empty.log", headers={"range": spec}, extensions=road)
            assert got.status == 416 and got.headers["content-range"] == "bytes */0"
