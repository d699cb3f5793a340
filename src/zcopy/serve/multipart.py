"""``multipart/byteranges`` framing, sans-IO: what goes between the parts, never the parts.

``frames`` yields the framing as ``bytes`` and each part's body as a
``ByteRange``: the server writes the bytes from memory and sends each range
with ``zcopy.acopy(sock, zcopy.section(file, first, length))``, so the file's
bytes stay on sendfile even in a multi-range answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence

from .ranges import ByteRange

BOUNDARY_BYTES = 12  # 96 random bits: a boundary that occurs in a part is never a concern
# A stand-in as long as every ``new_boundary()``: a part's framing cost depends only on
# the boundary's length, so a plan can be costed before (or without) drawing one.
SAME_LENGTH = "0" * (2 * BOUNDARY_BYTES)


def new_boundary() -> str:
    """A fresh random boundary (it must not occur in the parts; 96 random bits make sure).

    >>> len(new_boundary()) == len(SAME_LENGTH)
    True
    """
    return secrets.token_hex(BOUNDARY_BYTES)


def content_type(boundary: str) -> str:
    """The response's Content-Type.

    >>> content_type("b")
    'multipart/byteranges; boundary=b'
    """
    return f"multipart/byteranges; boundary={boundary}"


def part_head(boundary: str, ctype: str, r: ByteRange, size: int) -> bytes:
    """The delimiter and header lines in front of one part.

    >>> part_head("B", "text/plain", ByteRange(0, 1), 9)
    b'\\r\\n--B\\r\\nContent-Type: text/plain\\r\\nContent-Range: bytes 0-1/9\\r\\n\\r\\n'
    """
    return (
        f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n"
        f"Content-Range: {r.content_range(size)}\r\n\r\n"
    ).encode("latin-1")


def closing(boundary: str) -> bytes:
    """The close-delimiter after the last part.

    >>> closing("B")
    b'\\r\\n--B--\\r\\n'
    """
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


def part_overhead(boundary: str, ctype: str, size: int) -> int:
    """An upper bound on the bytes one part's framing costs (for the amplification check).

    >>> part_overhead("B", "text/plain", 9) >= len(part_head("B", "text/plain", ByteRange(8, 8), 9))
    True
    """
    return len(part_head(boundary, ctype, ByteRange(size, size), size))


def frames(
    boundary: str, ctype: str, ranges: Sequence[ByteRange], size: int
) -> Iterator[bytes | ByteRange]:
    """The response body in order: framing bytes, then each range to send from the file.

    >>> list(frames("B", "t/p", [ByteRange(0, 0)], 3))[1:]
    [ByteRange(first=0, last=0), b'\\r\\n--B--\\r\\n']
    """
    for r in ranges:
        yield part_head(boundary, ctype, r, size)
        yield r
    yield closing(boundary)


def body_length(boundary: str, ctype: str, ranges: Sequence[ByteRange], size: int) -> int:
    """The exact Content-Length of the multipart body.

    >>> body_length("B", "t/p", [ByteRange(0, 0)], 3) == sum(
    ...     len(f) if isinstance(f, bytes) else f.length for f in frames("B", "t/p", [ByteRange(0, 0)], 3))
    True
    """  # noqa: E501
    total = 0
    for f in frames(boundary, ctype, ranges, size):
        total += len(f) if isinstance(f, bytes) else f.length
    return total
