"""``Content-Disposition`` for a download name, sans-IO (RFC 6266, with RFC 8187/5987 encoding).

A name that is plain printable ASCII goes in a quoted ``filename``. Any other
name also gets ``filename*=UTF-8''...`` (percent-encoded UTF-8, which every
current browser prefers), beside an ASCII stand-in for the old ones. Control
characters never reach the header: CR/LF in a name cannot inject a field.
"""

from __future__ import annotations

from urllib.parse import quote

# RFC 8187 attr-char, minus ALPHA / DIGIT (quote keeps those anyway).
_ATTR_CHAR = "!#$&+-.^_`|~"


def ascii_fallback(name: str) -> str:
    """The name for clients that do not read ``filename*``: printable ASCII, else ``_``.

    >>> ascii_fallback("résumé 1.pdf"), ascii_fallback("a\\r\\nb")
    ('r_sum_ 1.pdf', 'a__b')
    """
    return "".join(c if " " <= c <= "~" else "_" for c in name)


def content_disposition(filename: str, kind: str = "attachment") -> str:
    """The header value that names a download (``kind`` "attachment" or "inline").

    >>> content_disposition("report.pdf")
    'attachment; filename="report.pdf"'
    >>> content_disposition('say "hi".txt', "inline")
    'inline; filename="say \\\\"hi\\\\".txt"'
    >>> content_disposition("€ rates.csv")
    'attachment; filename="_ rates.csv"; filename*=UTF-8\\'\\'%E2%82%AC%20rates.csv'
    """
    fallback = ascii_fallback(filename)
    quoted = fallback.replace("\\", "\\\\").replace('"', '\\"')
    value = f'{kind}; filename="{quoted}"'
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe=_ATTR_CHAR, errors="replace")
    return value
