"""multipart/byteranges framing: exact lengths, and parts that parse back to the ranges."""

from __future__ import annotations

import email.parser

from zcopy.serve import multipart
from zcopy.serve.ranges import ByteRange


def test_framing_round_trips_through_a_mime_parser() -> None:
    data = bytes(range(256)) * 40
    ranges = [ByteRange(0, 9), ByteRange(500, 999), ByteRange(10000, 10239)]
    boundary = multipart.new_boundary()
    body = b"".join(
        f if isinstance(f, bytes) else data[f.first : f.last + 1]
        for f in multipart.frames(boundary, "application/octet-stream", ranges, len(data))
    )
    assert len(body) == multipart.body_length(boundary, "application/octet-stream", ranges,
                                               len(data))
    msg = email.parser.BytesParser().parsebytes(
        f"Content-Type: {multipart.content_type(boundary)}\r\n\r\n".encode() + body
    )
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    for part, r in zip(parts, ranges, strict=True):
        assert part["Content-Range"] == f"bytes {r.first}-{r.last}/{len(data)}"
        assert part.get_payload(decode=True) == data[r.first : r.last + 1]


def test_only_the_last_frame_is_a_close_delimiter() -> None:
    frames = list(multipart.frames("B", "t/p", [ByteRange(0, 0), ByteRange(5, 5)], 10))
    framing = [f for f in frames if isinstance(f, bytes)]
    assert [f.endswith(b"--\r\n") for f in framing] == [False, False, True]


def test_overhead_bounds_every_part_head() -> None:
    size = 10**12
    bound = multipart.part_overhead("B" * 24, "application/octet-stream", size)
    for r in (ByteRange(0, 0), ByteRange(size - 1, size - 1), ByteRange(123456, 7654321)):
        assert len(multipart.part_head("B" * 24, "application/octet-stream", r, size)) <= bound


def test_boundaries_are_fresh() -> None:
    assert len({multipart.new_boundary() for _ in range(100)}) == 100
