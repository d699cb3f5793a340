"""The ASGI http scope, sans-IO: a parsed head in, the scope dict out."""

from __future__ import annotations

import pytest

from zcopy.serve.asgi.reader import AsgiRequest, AsgiRequestReader
from zcopy.serve.asgi.scope import EXTENSIONS, BadTarget, http_scope, split_target


def parse(raw: bytes) -> AsgiRequest:
    r = AsgiRequestReader()
    r.feed(raw)
    req = r.ready[0]
    assert isinstance(req, AsgiRequest)
    return req


@pytest.mark.parametrize(
    ("target", "root", "path", "raw_path", "query"),
    [
        (b"/", "", "/", b"/", b""),
        (b"/a%20b/c?x=1&y", "", "/a b/c", b"/a%20b/c", b"x=1&y"),
        (b"/caf%C3%A9", "", "/caf\u00e9", b"/caf%C3%A9", b""),
        (b"/%2F", "", "//", b"/%2F", b""),  # decoded, as uvicorn does; raw_path keeps it
        (b"/x", "/mount", "/mount/x", b"/mount/x", b""),
        (b"http://h.example:81/abs?q", "", "/abs", b"/abs", b"q"),
        (b"/%FF", "", "/\ufffd", b"/%FF", b""),  # not UTF-8: U+FFFD as uvicorn; raw_path keeps it
        (b"/plain/path", "", "/plain/path", b"/plain/path", b""),  # nothing to decode
        (b"/a?", "", "/a", b"/a", b""),
        (b"/q?x=%20", "", "/q", b"/q", b"x=%20"),  # the query stays as sent
        (b"/p+q;r", "", "/p+q;r", b"/p+q;r", b""),  # a + is no space in a path
    ],
)
def test_paths(target: bytes, root: str, path: str, raw_path: bytes, query: bytes) -> None:
    req = parse(b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    s = http_scope(req, client=None, server=None, root_path=root)
    assert (s["path"], s["raw_path"], s["query_string"], s["root_path"]) == (
        path, raw_path, query, root
    )


def test_fields_kept_in_order_lowercased() -> None:
    req = parse(b"POST /u HTTP/1.0\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
    s = http_scope(req, client=("1.2.3.4", 5), server=("0.0.0.0", 80), state={"k": [1]})
    assert s["headers"] == [(b"x-a", b"1"), (b"x-a", b"2"), (b"content-length", b"0")]
    assert (s["method"], s["http_version"], s["scheme"]) == ("POST", "1.0", "http")
    assert s["client"] == ("1.2.3.4", 5) and s["server"] == ("0.0.0.0", 80)
    assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}


def test_state_is_a_shallow_copy_and_extensions_are_per_request() -> None:
    req = parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    state = {"db": object()}
    s = http_scope(req, client=None, server=None, state=state)
    s["state"]["new"] = 1
    s["extensions"]["mine"] = {}
    assert "new" not in state and s["state"]["db"] is state["db"]
    assert "mine" not in EXTENSIONS
    assert "state" not in http_scope(req, client=None, server=None)


def test_bad_absolute_target() -> None:
    with pytest.raises(BadTarget):
        split_target(b"http://[nope/")
