"""Sending a planned file response over ASGI, by the best road the server offers.

``serve.plan.plan_file`` decides *what* to send; this module decides *how*:

* ``http.response.zerocopysend`` when the server advertises it: every file
  part goes as ``(file, offset, count)`` and the server sends it by sendfile,
  framing of a multi-range body in ``http.response.body`` messages between;
* ``http.response.pathsend`` when that is all the server has, the body is
  the whole file (the extension has no offset or count) *and* the caller may
  let the server open the path again (``path`` given; ``StaticFiles`` gives
  none when its checks were made on the opened fd: a path reopened after them
  could name a file they refused);
* otherwise a read loop of ``http.response.body`` chunks. A chunk is read
  inline with ``preadv2(RWF_NOWAIT)`` when the page cache has it, and in a
  worker thread only when the disk would block, so a cached file costs no
  thread hop per chunk (Starlette pays one per 64 KiB).

``choose`` names the road and why (``Delivery``). A file that shrinks under a
read loop raises ``FileShrank`` after the response started: the server must
close the connection, never pad the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..serve.plan import Part, Plan
from .types import PATHSEND, ZEROCOPYSEND, Message, Receive, Scope, Send

CHUNK = 256 * 1024  # read-loop chunk: a quarter of the syscalls and loop turns of 64 KiB
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0)

Headers = list[tuple[bytes, bytes]]
_T = TypeVar("_T")


class Delivery(enum.Enum):
    """How a response's body went to the server, and why that road.

    >>> Delivery.READ_LOOP_RANGE.value
    'read loop: pathsend cannot carry a range or multipart body'
    """

    NO_BODY = "no body: HEAD, 304, an empty file"
    ZEROCOPYSEND = "zerocopysend: the server sends each file part by offset and count"
    PATHSEND = "pathsend: the server sends the whole file by path"
    READ_LOOP_NO_EXTENSION = "read loop: the server advertises neither pathsend nor zerocopysend"
    READ_LOOP_RANGE = "read loop: pathsend cannot carry a range or multipart body"
    READ_LOOP_NO_PATH = "read loop: pathsend would open the path again, past the checks on the fd"
    MEMORY = "memory: the body is a small page, not the file"


def choose(extensions: Mapping[str, Any] | None, plan: Plan, *, by_path: bool = True) -> Delivery:
    """Pick the road for ``plan`` given the scope's ``extensions``.

    ``by_path`` False: the server must not be asked to open the file by its path.

    >>> from zcopy.serve.ranges import ByteRange
    >>> whole = Plan(200, b"", 3, (ByteRange(0, 2),), whole=True)
    >>> part = Plan(206, b"", 1, (ByteRange(0, 0),))
    >>> choose({ZEROCOPYSEND: {}, PATHSEND: {}}, part).name, choose({PATHSEND: {}}, whole).name
    ('ZEROCOPYSEND', 'PATHSEND')
    >>> choose({PATHSEND: {}}, part).name, choose(None, whole).name
    ('READ_LOOP_RANGE', 'READ_LOOP_NO_EXTENSION')
    >>> choose({PATHSEND: {}}, whole, by_path=False).name
    'READ_LOOP_NO_PATH'
    """
    if not plan.parts:
        return Delivery.NO_BODY
    if not plan.file_bytes:
        return Delivery.MEMORY
    ext = extensions or {}
    if ZEROCOPYSEND in ext:
        return Delivery.ZEROCOPYSEND
    if PATHSEND in ext:
        if not plan.whole:
            return Delivery.READ_LOOP_RANGE
        return Delivery.PATHSEND if by_path else Delivery.READ_LOOP_NO_PATH
    return Delivery.READ_LOOP_NO_EXTENSION


class FileShrank(RuntimeError):
    """The file ended before the planned bytes were read; the response cannot be finished.

    >>> isinstance(FileShrank("a.bin ended at byte 10"), RuntimeError)
    True
    """


# Header lines already split: a file's Content-Type, ETag and dates come with every answer.
_PAIRS: dict[bytes, tuple[bytes, bytes]] = {}
# ... and whole blocks of them: all the lines of a plan's fields but the last, which for
# a range is its own Content-Range (the rest are the file's, the same every time).
_BLOCKS: dict[bytes, Headers] = {}
PAIRS_MAX = 1024  # then forgotten at once: a cache, never a leak


def _pair(line: bytes) -> tuple[bytes, bytes]:
    """One header line (no CRLF) as a ``(name, value)`` pair, the name lower-cased."""
    pair = _PAIRS.get(line)
    if pair is None:
        name, _, value = line.partition(b":")
        pair = (name.strip().lower(), value.strip())
        if len(_PAIRS) >= PAIRS_MAX:
            _PAIRS.clear()
        _PAIRS[line] = pair
    return pair


def header_list(fields: bytes) -> Headers:
    """CRLF-terminated header lines as ASGI ``(name, value)`` pairs, names lower-cased.

    >>> header_list(b"Content-Type: text/plain\\r\\nETag: \\"1\\"\\r\\nX: 2\\r\\n")
    [(b'content-type', b'text/plain'), (b'etag', b'"1"'), (b'x', b'2')]
    >>> header_list(b"X: 2\\r\\n"), header_list(b"")
    ([(b'x', b'2')], [])
    """
    last = fields.rfind(b"\r\n", 0, len(fields) - 2)
    last = last + 2 if last >= 0 else 0  # where the last line starts
    block = fields[:last]
    known = _BLOCKS.get(block)
    if known is None:
        known = [_pair(line) for line in block.split(b"\r\n") if line]
        if len(_BLOCKS) >= PAIRS_MAX:
            _BLOCKS.clear()
        _BLOCKS[block] = known
    out = known.copy()  # the caller's to extend
    if last < len(fields):
        out.append(_pair(fields[last:-2]))
    return out


def response_start(plan: Plan, extra: Sequence[tuple[bytes, bytes]] = ()) -> Message:
    """The ``http.response.start`` message for ``plan``, with ``extra`` headers after its own.

    >>> response_start(Plan(200, b"A: b\\r\\n", 3), [(b"x", b"y")])["headers"]
    [(b'a', b'b'), (b'x', b'y'), (b'content-length', b'3')]
    """
    headers = header_list(plan.fields)
    headers.extend(extra)
    if plan.length is not None:
        headers.append((b"content-length", b"%d" % plan.length))
    return {"type": "http.response.start", "status": plan.status, "headers": headers}


async def deliver(
    scope: Scope,
    receive: Receive,
    send: Send,
    plan: Plan,
    file: io.FileIO | None,
    path: str | None,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> Delivery:
    """Send ``plan``'s response; file parts come from ``file`` (``path``, absolute, for pathsend).

    ``path`` None: the server is never told to open the file by name (no pathsend).

    The caller keeps ``file`` open until this returns, and closes it.

    >>> sent = []
    >>> async def send(message):
    ...     sent.append(message["type"])
    >>> page = Plan(404, b"Content-Type: text/html\\r\\n", 4, (b"gone",))
    >>> asyncio.run(deliver({"type": "http"}, None, send, page, None, "")).name, sent
    ('MEMORY', ['http.response.start', 'http.response.body'])
    """
    how = choose(scope.get("extensions"), plan, by_path=path is not None)
    await send(response_start(plan, extra))
    if how is Delivery.NO_BODY:
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif how is Delivery.PATHSEND:
        assert path is not None
        await send({"type": PATHSEND, "path": path})
    elif how in (Delivery.ZEROCOPYSEND, Delivery.MEMORY):
        last = len(plan.parts) - 1
        for i, part in enumerate(plan.parts):
            if isinstance(part, bytes):
                await send({"type": "http.response.body", "body": part, "more_body": i < last})
            else:
                assert file is not None
                await send(
                    {
                        "type": ZEROCOPYSEND,
                        "file": file,
                        "offset": part.first,
                        "count": part.length,
                        "more_body": i < last,
                    }
                )
    else:
        await _read_loop(scope, receive, send, plan.parts, file)
    return how


async def _read_loop(
    scope: Scope, receive: Receive, send: Send, parts: Sequence[Part], file: io.FileIO | None
) -> None:
    """Every part as ``http.response.body`` chunks; stop early if the client went away."""
    watch = _DisconnectWatch.start(scope, receive)
    try:
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if isinstance(part, bytes):
                await send({"type": "http.response.body", "body": part, "more_body": i < last})
                continue
            assert file is not None
            fd = file.fileno()
            offset, remaining = part.first, part.length
            while remaining:
                if watch is not None:
                    # A send to a gone client returns at once and a cached read does not
                    # wait: without this turn of the loop the watch would never run.
                    await asyncio.sleep(0)
                    if watch.gone:
                        return  # nobody to send to: stop reading the file
                chunk = await read_chunk(fd, offset, min(CHUNK, remaining))
                if not chunk:
                    raise FileShrank(
                        f"{file.name!r} ended at byte {offset}, {remaining} bytes short of the "
                        "planned body; the response cannot be completed"
                    )
                offset += len(chunk)
                remaining -= len(chunk)
                more = remaining > 0 or i < last
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
    finally:
        if watch is not None:
            await watch.stop()


async def read_chunk(fd: int, offset: int, size: int) -> bytes:
    """Up to ``size`` bytes at ``offset``: inline if cached, else in a worker thread.

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f:
    ...     _ = f.write(b"hello"); f.flush()
    ...     asyncio.run(read_chunk(f.fileno(), 1, 3))
    b'ell'
    """
    if _RWF_NOWAIT:
        buf = bytearray(size)
        try:
            got = os.preadv(fd, [buf], offset, _RWF_NOWAIT)
        except BlockingIOError:
            pass  # not (all) in the page cache: reading would wait for the disk
        except OSError:
            pass  # a filesystem without RWF_NOWAIT: the thread's plain pread will do
        else:
            if got or size == 0:
                return bytes(buf) if got == size else bytes(memoryview(buf)[:got])
            # 0 bytes: end of file, or nothing cached at a hole; pread tells which
    return await _in_thread(os.pread, fd, size, offset)


async def _in_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call off the event loop (asyncio; anyio under other loops)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        return await loop.run_in_executor(None, fn, *args)
    import anyio.to_thread  # trio and friends: Starlette's own dependency

    return await anyio.to_thread.run_sync(fn, *args)


class _DisconnectWatch:
    """Listen for ``http.disconnect`` while a read loop sends (ASGI spec < 2.4 only).

    Before spec 2.4 a server may drop sends to a gone client silently
    (uvicorn does), so a read loop would read the rest of the file for nobody.
    From 2.4 on, ``send`` raises ``OSError`` instead and no watch is needed.
    """

    def __init__(self, receive: Receive) -> None:
        self.gone = False
        self.task = asyncio.ensure_future(self._run(receive))

    @classmethod
    def start(cls, scope: Scope, receive: Receive) -> _DisconnectWatch | None:
        version = str(scope.get("asgi", {}).get("spec_version", "2.0"))
        try:
            if tuple(int(x) for x in version.split(".")) >= (2, 4):
                return None
            asyncio.get_running_loop()
        except (ValueError, RuntimeError):
            return None  # not asyncio (or a nonsense version): no watch, sends still end it
        return cls(receive)

    async def _run(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                self.gone = True
                return

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
