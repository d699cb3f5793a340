"""The common request head in one step: GET or HEAD, HTTP/1.1, plain fields, no body.

Most requests a server sees have one shape: ``GET /path HTTP/1.1``, a Host, the
few fields a browser or a client library always sends, nothing after the head.
``match`` recognises exactly that shape with one regular expression and returns
its parts; anything else is ``None`` and goes to the full parser (httptools),
which knows every rule and every error status:

* another method or version, an absolute-form or ``*`` target, a target byte
  outside RFC 3986's (a fragment, a space, a control or non-ASCII byte);
* a field name outside the token characters; a value with a control or
  non-ASCII byte, an empty value, trailing whitespace, an obs-fold (leading
  whitespace is allowed: both drop it);
* a field that changes the framing or the connection (``FRAMING``):
  ``Content-Length``, ``Transfer-Encoding``, ``Connection``,
  ``Proxy-Connection``, ``Upgrade``, ``Expect``, ``Keep-Alive``. The
  expression checks the shape of the field lines, not their names: the caller
  refuses these names as it splits the lines (``RequestReader._take`` looks
  each name up once in its table; a lookahead per line in the expression cost
  a third of its time);
* more than ``MAX_FIELDS`` fields or a head longer than ``MAX``, so no limit
  the full parser enforces (a field line, the target, the field count, the
  head) can be crossed here.

The shape is a strict subset of what the full parser accepts, and for it both
give the same request: ``tests/test_serve_simplehead.py`` compares them over a
table and thousands of random heads. Why: the parser's five callbacks into
Python cost more than the rest of answering a small file (docs/serve.md,
"Small files").

>>> match(b"GET /a?b=1 HTTP/1.1\\r\\nHost: h\\r\\nAccept: */*\\r\\n\\r\\n")
('GET', b'/a?b=1', b'Host: h\\r\\nAccept: */*\\r\\n', 45)
>>> match(b"POST / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n") is None
True
"""

from __future__ import annotations

import re

MAX = 8190  # parser.MAX_FIELD (a field line) and parser.MAX_TARGET
MAX_FIELDS = 100  # parser.MAX_FIELDS

# Fields whose meaning is the full parser's: a body, the connection's fate, another protocol,
# an interim response.
FRAMING = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"proxy-connection",
        b"upgrade",
        b"expect",
        b"keep-alive",
    }
)

# RFC 9112 §3: method SP origin-form SP HTTP/1.1 CRLF, field lines, CRLF. Possessive
# quantifiers never backtrack, so a hostile head costs one linear pass.
_HEAD = re.compile(
    rb"(GET|HEAD) (/[A-Za-z0-9\-._~%!$&'()*+,;=:@/?]*+) HTTP/1\.1\r\n"
    rb"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[ \t]*+[!-~]++(?:[ \t]++[!-~]++)*+\r\n){1,"
    + str(MAX_FIELDS).encode()
    + rb"}+)\r\n"
)
# One field line of a block _HEAD matched: name, value (leading whitespace dropped).
FIELD = re.compile(rb"([^:]+):[ \t]*([^\r]*)\r\n")
_METHODS = {b"GET": "GET", b"HEAD": "HEAD"}

# (method, target, the field lines as sent (``fields`` splits them), where the head ends)
Head = tuple[str, bytes, bytes, int]


def match(data: bytes, pos: int = 0) -> Head | None:
    """The head of the simple shape that starts at ``data[pos]``, or ``None`` (the full
    parser's). Its field names are the caller's to check against ``FRAMING``.

    >>> match(b"GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\nGET /2", 0)[2:]
    (b'Host: h\\r\\n', 27)
    >>> match(b"GET / HTTP/1.1\\r\\nHost: h\\r\\nX-A: 1\\r\\n  folded\\r\\n\\r\\n") is None
    True
    """
    m = _HEAD.match(data, pos)
    if m is None or m.end() - pos > MAX:
        return None
    return _METHODS[m[1]], m[2], m[3], m.end()


def fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The field lines of a simple head, names lowercased (as ASGI's ``headers`` has them).

    >>> fields(b"Host: h\\r\\nAccept:  */*\\r\\n")
    [(b'host', b'h'), (b'accept', b'*/*')]
    """
    return [(name.lower(), value) for name, value in FIELD.findall(block)]
