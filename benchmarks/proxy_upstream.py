"""The upstream for benchmarks/proxy_bench.py: one byte says what a connection wants.

``S`` + 8-byte big-endian size: send that many bytes, then close (a download).
``E``: echo everything until EOF, then close.  ``I``: idle until EOF.
Prints ``listening PORT`` on stdout when ready. Plain asyncio, no zcopy.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import sys

CHUNK = memoryview(bytes(range(256)) * 4096)  # 1 MiB


async def handle(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    try:
        op = await loop.sock_recv(sock, 1)
        if op == b"S":
            head = b""
            while len(head) < 8:
                more = await loop.sock_recv(sock, 8 - len(head))
                if not more:
                    return
                head += more
            left = int.from_bytes(head, "big")
            while left:
                n = min(left, len(CHUNK))
                await loop.sock_sendall(sock, CHUNK[:n])
                left -= n
        elif op == b"E":
            buf = bytearray(1 << 20)
            while n := await loop.sock_recv_into(sock, buf):
                await loop.sock_sendall(sock, memoryview(buf)[:n])
        elif op == b"I":
            while await loop.sock_recv(sock, 65536):
                pass
    except OSError:
        pass
    finally:
        sock.close()


async def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    loop = asyncio.get_running_loop()
    server = socket.create_server(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0),
                                  backlog=4096)
    server.setblocking(False)
    print("listening", server.getsockname()[1], flush=True)
    tasks = set()
    while True:
        sock, _ = await loop.sock_accept(server)
        sock.setblocking(False)
        task = loop.create_task(handle(loop, sock))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    asyncio.run(main())
