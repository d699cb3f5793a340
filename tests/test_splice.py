"""The splice route (``_routes/splice``) when the sink goes away: the error and the count.

A pipe spliced straight into a socket whose peer has closed gets EPIPE from
the kernel: that is not a refusal to fall back from, it is the caller's
``BrokenPipeError``, carrying the bytes that did reach the peer.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

import zcopy

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def test_pipe_into_a_socket_whose_peer_left_raises_broken_pipe_with_the_count() -> None:
    a, peer = socket.socketpair()
    r, w = os.pipe()
    try:
        assert zcopy.explain(a, r).route is zcopy.Route.SPLICE
        os.write(w, b"delivered")
        got = bytearray()

        def read_then_leave() -> None:
            while len(got) < 9:
                got.extend(peer.recv(9 - len(got)))
            peer.close()  # gone: the next splice into a has no one to deliver to
            os.write(w, b"never delivered")

        reader = threading.Thread(target=read_then_leave, daemon=True)
        reader.start()
        with pytest.raises(BrokenPipeError) as caught:
            zcopy.copy(a, r)
        reader.join(10)
        assert bytes(got) == b"delivered"
        assert caught.value.bytes_copied == 9  # type: ignore[attr-defined]
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        peer.close()
