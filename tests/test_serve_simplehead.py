"""The one-step path for simple request heads (serve/simplehead.py, ``RequestReader._take``)
against the full parser (httptools): for every input, the same requests and the same state.

Each case is fed to two readers, one taking simple heads in one step and one that never does
(``one_step = False``), in the same pieces; both must queue equal requests (every field the
server reads) and end in the same state. The random cases build heads from parts chosen to
sit on the edges of the simple shape: a byte the target or a value may not hold, trailing
whitespace, an empty value, a repeated Host or Range, the framing fields, other methods and
versions, bare LF line ends, pipelines mixing both kinds, cut at random places.
"""

from __future__ import annotations

import random

import pytest

from zcopy.serve import parser, simplehead
from zcopy.serve.asgi.reader import AsgiRequest, AsgiRequestReader
from zcopy.serve.parser import Request, RequestReader


class FullParser(RequestReader):
    one_step = False


class FullParserAsgi(AsgiRequestReader):
    one_step = False


class CountingReader(RequestReader):
    """Counts the heads the full parser began."""

    began = 0

    def on_message_begin(self) -> None:
        type(self).began += 1
        super().on_message_begin()


def seen(reader: RequestReader) -> tuple[object, ...]:
    """Everything a server reads from a reader: its requests and its state."""
    reqs: list[tuple[object, ...]] = []
    for r in reader.ready:
        row: tuple[object, ...] = (
            r.method, r.target, r.version, r.keep_alive, r.error, sorted(r.headers.items())
        )
        if isinstance(r, AsgiRequest):
            row += (r.raw_headers, r.complete, r.expect_continue, r.websocket, list(r.body))
        reqs.append(row)
    return (reqs, reader.in_head, reader.in_body, reader.broken, reader.continue_due)


def both(data: bytes, cuts: list[int], asgi: bool = False) -> None:
    fast: RequestReader = AsgiRequestReader() if asgi else RequestReader()
    full: RequestReader = FullParserAsgi() if asgi else FullParser()
    for reader in (fast, full):
        start = 0
        for end in [*cuts, len(data)]:
            reader.feed(data[start:end])
            start = end
    assert seen(fast) == seen(full), data


SIMPLE = b"GET /a/b.js?v=1&x=%20 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\n\r\n"
TABLE = [
    SIMPLE,
    b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost:h\r\nUser-Agent:  wrk/4 (x; y)\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\nIf-None-Match: \"x\", W/\"y\"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n",  # repeated
    b"GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",  # two Hosts: 400
    b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",  # no Host: 400
    b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",  # not an authority: 400
    b"GET / HTTP/1.1\r\nHost: h \r\n\r\n",  # trailing space
    b"GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n",  # empty value
    b"GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n",  # obs-text
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  folded\r\n\r\n",  # obs-fold
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.0\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"get / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",
    b"GET / HTTP/2.0\r\nHost: h\r\n\r\n",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",  # 414
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n",  # 431
    b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: 1\r\n" * 99 + b"\r\n",  # 100 fields: fine
    SIMPLE * 3 + b"GET /x HTTP/1.1\r\nHost: h\r\nRange: bytes=1-2\r\n\r\n" + SIMPLE,
]


@pytest.mark.parametrize("asgi", [False, True], ids=["static", "asgi"])
@pytest.mark.parametrize("data", TABLE, ids=range(len(TABLE)))
def test_the_table_parses_the_same_whole_and_cut_everywhere(data: bytes, asgi: bool) -> None:
    both(data, [], asgi)
    for cut in range(1, min(len(data), 160)):
        both(data, [cut], asgi)


TARGET_BYTES = b"/az09-._~%!$&'()*+,;=:@?#\" <>\\^`{|}\t\x7f\x80"
VALUE_BYTES = b"az09 \t:;,\"'()/\\=*-_\x7f\x80\xff\x00"
NAMES = [b"Host", b"host", b"HOST", b"Range", b"If-None-Match", b"Accept-Encoding", b"Referer",
         b"User-Agent", b"X-Any", b"Accept", b"Connection", b"Content-Length",
         b"Transfer-Encoding", b"Expect", b"Upgrade", b"Keep-Alive", b"Proxy-Connection",
         b"Bad Name", b"Bad\x7fName", b"If-Range", b"Cookie",
         # the framing names in other cases, and names they begin (no framing field)
         b"connection", b"CONTENT-LENGTH", b"tRaNsFeR-eNcOdInG", b"EXPECT", b"keep-ALIVE",
         b"Upgrade-Insecure-Requests", b"Connection-X", b"Content-Lengths", b"hOsT", b"rAnGe"]


def random_head(rnd: random.Random) -> bytes:
    method = rnd.choice([b"GET", b"GET", b"GET", b"HEAD", b"POST", b"OPTIONS", b"GeT"])
    target = b"/" + bytes(rnd.choice(TARGET_BYTES) for _ in range(rnd.randint(0, 12)))
    if rnd.random() < 0.7:  # mostly bytes the simple shape allows
        target = b"/" + bytes(rnd.choice(b"az09-._~%/?=&") for _ in range(rnd.randint(0, 12)))
    version = rnd.choice([b"1.1"] * 6 + [b"1.0", b"2.0", b"1.2"])
    eol = b"\r\n" if rnd.random() < 0.95 else b"\n"
    lines = [method + b" " + target + b" HTTP/" + version]
    if rnd.random() < 0.9:
        lines.append(b"Host: " + rnd.choice([b"h", b"example.com:80", b"[::1]:8", b"a b"]))
    for _ in range(rnd.choice([0, 1, 2, 3, 8])):
        name = rnd.choice(NAMES)
        if rnd.random() < 0.8:
            value = bytes(rnd.choice(b"az09-,;=/*") for _ in range(rnd.randint(1, 10)))
        else:
            value = bytes(rnd.choice(VALUE_BYTES) for _ in range(rnd.randint(0, 6)))
        if name == b"Content-Length":
            value = rnd.choice([b"0", b"3", b"x"])
        lines.append(name + b":" + rnd.choice([b" ", b"", b"  ", b"\t"]) + value)
    head = eol.join(lines) + eol + eol
    if b"Content-Length: 3" in head:
        head += b"abc"
    return head


@pytest.mark.parametrize("asgi", [False, True], ids=["static", "asgi"])
def test_random_pipelines_parse_the_same(asgi: bool) -> None:
    rnd = random.Random(20261202)
    for _ in range(3000):
        data = b"".join(random_head(rnd) for _ in range(rnd.randint(1, 4)))
        cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(0, 3))))
        both(data, cuts, asgi)


def test_simple_heads_never_reach_the_full_parser() -> None:
    """The point of it: a keep-alive client's usual heads, pipelined or one by one, make no
    httptools callback at all; the first other head does."""
    reader = CountingReader()
    for _ in range(5):
        reader.feed(SIMPLE)
    reader.feed(SIMPLE * 4)
    assert len(reader.ready) == 9 and CountingReader.began == 0
    reader.feed(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" + SIMPLE)
    assert len(reader.ready) == 11 and CountingReader.began == 2  # both by the full parser
    reader.feed(SIMPLE)
    assert len(reader.ready) == 12 and CountingReader.began == 2  # between messages again


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: " + b"a" * 8200 + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: a\r\n" * 101 + b"\r\n",
        b"GET /" + b"a" * 8190 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
    ],
    ids=["long field", "101 fields", "long target"],
)
def test_no_limit_of_the_full_parser_is_crossed_in_one_step(data: bytes) -> None:
    assert simplehead.match(data) is None


def test_a_hostile_head_costs_one_linear_pass() -> None:
    """Possessive quantifiers: no backtracking blow-up on near-misses (a regression here
    would hang this test for minutes, not fail it by a margin)."""
    near = b"GET /" + b"a" * 50_000 + b" HTTP/1.1\r\n" + b"X: " + b"a \t" * 20_000 + b"\r\n"
    assert simplehead.match(near) is None
    assert simplehead.match(b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * 5000) is None


def test_a_simple_request_is_a_plain_request() -> None:
    reader = RequestReader()
    reader.feed(SIMPLE)
    req = reader.ready.popleft()
    assert type(req) is Request and req.request_line == "GET /a/b.js?v=1&x=%20 HTTP/1.1"


def test_field_names_a_flood_invents_are_not_remembered() -> None:
    """The one-step path remembers how each field name maps to a key, but not every name a
    client invents: past the bound, names are still read right, just not kept."""
    reader = RequestReader()
    for i in range(3 * parser._KEYS_MAX):
        reader.feed(b"GET / HTTP/1.1\r\nX-Made-Up-%d: 1\r\nhOsT: h\r\nRANGE: bytes=0-1\r\n\r\n" % i)
        req = reader.ready.popleft()
        assert req.headers == {"host": "h", "range": "bytes=0-1"}
    assert len(parser._KEYS) <= parser._KEYS_MAX


def test_a_repeated_field_block_gives_equal_fields_never_shared() -> None:
    """The same field lines again are parsed once (``_take`` keeps the last block), but each
    request gets its own dict: a change to one request's fields reaches no other."""
    reader = RequestReader()
    reader.feed(SIMPLE * 3)
    reqs = [reader.ready.popleft() for _ in range(3)]
    assert all(r.headers == {"host": "example.com:8080"} for r in reqs)
    assert len({id(r.headers) for r in reqs}) == 3
    for r in reqs:  # the first parsed the block, the others were given a copy of the result
        r.headers["range"] = "bytes=0-1"
    reader.feed(SIMPLE)
    assert reader.ready.popleft().headers == {"host": "example.com:8080"}
    reader.feed(b"GET / HTTP/1.1\r\nHost: other\r\n\r\n" + SIMPLE)
    assert [r.headers for r in reader.ready] == [{"host": "other"}, {"host": "example.com:8080"}]


def test_a_repeated_field_block_gives_each_asgi_request_its_own_headers_list() -> None:
    reader = AsgiRequestReader()
    reader.feed(SIMPLE * 3)
    reqs = [reader.ready.popleft() for _ in range(3)]
    assert isinstance(reqs[0], AsgiRequest)
    lines = [(b"host", b"example.com:8080"), (b"accept", b"*/*")]
    assert all(isinstance(r, AsgiRequest) and r.raw_headers == lines for r in reqs)
    for r in reqs:  # an app may change the scope's headers list: no other request sees it
        assert isinstance(r, AsgiRequest)
        r.raw_headers.append((b"x", b"y"))
    reader.feed(SIMPLE)
    req = reader.ready.popleft()
    assert isinstance(req, AsgiRequest) and req.raw_headers == lines


@pytest.mark.parametrize("asgi", [False, True], ids=["static", "asgi"])
def test_a_head_begun_behind_simple_heads_is_bounded_as_the_full_parser_bounds_it(
    asgi: bool,
) -> None:
    """A partial head's raw bytes are counted per chunk, the chunk it began in whole
    (``feed``): simple heads taken in one step before it count too, or a hostile client
    that puts 64 KiB of simple heads in front of a 70 KiB unfinished field line gets its
    431 from the full parser and none from the one-step reader."""
    simple = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 8000 + b"\r\n\r\n"
    assert simplehead.match(simple) is not None
    front = simple * 8
    partial = b"GET / HTTP/1.1\r\nHost: h\r\nX-Y: " + b"b" * 70_000
    limit = parser.MAX_HEAD + 65536  # what feed lets an unfinished head hold
    assert len(partial) <= limit < len(front) + len(partial)
    both(front + partial, [], asgi)
    both(front + partial, [len(front) + 1000], asgi)  # the head begins in the first chunk
    both(front + partial, [len(front)], asgi)  # it begins a chunk: no simple head in it


def test_a_head_sink_sees_the_full_parsers_heads_and_its_errors() -> None:
    """``on_head`` runs inside httptools' callback: the reader is in the body state then, and
    a sink that raises makes the request a 400 (HttpParserCallbackError), not an exception
    out of ``feed``. A reader with a sink leaves every head to the full parser, so a caller's
    sink meets one behaviour whichever path the bytes would have taken."""
    heads = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * 2

    def record(into: list[tuple[str, bool, bool]], reader: RequestReader) -> None:
        reader.head_sink = lambda req: into.append((req.method, reader.in_head, reader.in_body))

    sunk: list[list[tuple[str, bool, bool]]] = []
    for cls in (RequestReader, FullParser):
        reader = cls()
        sunk.append([])
        record(sunk[-1], reader)
        reader.feed(heads)
        assert len(reader.ready) == 2
    assert sunk[0] == sunk[1] == [("GET", False, True)] * 2

    def broken_sink(req: Request) -> None:
        raise ValueError("the caller's bug")

    states = []
    for cls in (RequestReader, FullParser):
        reader = cls(on_head=broken_sink)
        reader.feed(heads)
        states.append(seen(reader))
    assert states[0] == states[1]
    assert states[0][3] is True  # broken: a 400 queued


# Field blocks the one-step path must never take for one another: each pair has the same
# length (a memo keyed on less than the bytes would confuse them) and differs in what the
# full parser makes of it: Host validity, a framing name, a repeated field, a value.
SAME_LENGTH = [
    (b"Host: abc\r\n", b"Host: a b\r\n"),  # a valid authority, then none: 400
    (b"Host: h\r\nAccept: x\r\n", b"Host: h\r\nExpect: x\r\n"),  # framing (Expect)
    (b"Host: h\r\nUser-Agent: x\r\n", b"Host: h\r\nConnection: x\r\n"),
    (b"Host: h\r\nAccept-Charset: 0\r\n", b"Host: h\r\nContent-Length: 0\r\n"),
    (b"Host: h\r\nRange: bytes=0-1\r\n", b"Host: h\r\nrange: bytes=0-2\r\n"),  # a value
    (b"Host: h\r\nX-AAA: 1\r\nX-BBB: 2\r\n", b"Host: h\r\nRange: 1\r\nRange: 2\r\n"),  # twice
    (b"Host: h\r\nX-A: 1\r\n", b"Host: h\r\nX-B: 1\r\n"),  # the ASGI headers differ
    (b"Host: h\r\nXost: h\r\n", b"Host: h\r\nHost: h\r\n"),  # two Hosts: 400
]


@pytest.mark.parametrize("asgi", [False, True], ids=["static", "asgi"])
@pytest.mark.parametrize("pair", SAME_LENGTH, ids=range(len(SAME_LENGTH)))
def test_a_field_block_is_remembered_by_its_bytes_and_only_once_taken(
    pair: tuple[bytes, bytes], asgi: bool
) -> None:
    """The last taken block is kept (``_take``, ``_took``): a different block of the same
    length, and a block the one-step path refused (left to the full parser), sent again
    right after, must each be read afresh."""
    first, second = (b"GET / HTTP/1.1\r\n" + block + b"\r\n" for block in pair)
    assert len(first) == len(second)
    for heads in ([first, second], [first, second, second], [second, first, second, first]):
        data = b"".join(heads)
        both(data, [], asgi)
        # one head per feed, as a keep-alive client sends them: each feed starts afresh
        both(data, [len(first) * n for n in range(1, len(heads))], asgi)


KEPT_HOSTS = [b"h", b"H", b"h:80", b"a b", b"x@y", b"[::1]", b"h:8x"]
KEPT_LINES = [
    b"Accept: */*",
    b"User-Agent: x y",
    b"Range: bytes=0-1",
    b"range: bytes=2-3",
    b'If-None-Match: "a"',
    b"X: 1",
    b"Host: h",
    b"Expect: 100-continue",
    b"Connection: keep-alive",
    b"UPGRADE: websocket",
    b"X-Y:\tz",
]


def kept_block(rnd: random.Random) -> bytes:
    """A field block a keep-alive client might repeat: a Host (or none) and a few fields,
    some of which leave the head to the full parser."""
    lines = [rnd.choice([b"Host", b"host"]) + b": " + rnd.choice(KEPT_HOSTS)]
    lines = lines[: rnd.random() < 0.95] + rnd.sample(KEPT_LINES, rnd.choice([0, 1, 2]))
    return b"".join(line + b"\r\n" for line in lines)


def message(rnd: random.Random, blocks: list[bytes]) -> bytes:
    """One message whose fields are one of the connection's few blocks: a simple head, or a
    head with a body, HTTP/1.0 keep-alive, an obs-fold, bare LFs; or a stray CRLF."""
    block = rnd.choice(blocks)
    body = bytes(rnd.choice(b"GET /\r\n") for _ in range(rnd.randint(0, 5)))
    others = [
        b"POST / HTTP/1.1\r\n" + block + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        b"HEAD / HTTP/1.1\r\n" + block + b"Content-Length: 3\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + block + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"GET / HTTP/1.0\r\n" + block + b"Connection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + block + b"X: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\n" + block.replace(b"\r\n", b"\n") + b"\n",
        b"\r\n",
    ]
    if rnd.random() < 0.4:
        return rnd.choice(others)
    method = rnd.choice([b"GET", b"HEAD"])
    return method + b" /" + rnd.choice([b"", b"a?b=1"]) + b" HTTP/1.1\r\n" + block + b"\r\n"


@pytest.mark.parametrize("asgi", [False, True], ids=["static", "asgi"])
def test_random_pipelines_of_repeated_field_blocks_parse_the_same(asgi: bool) -> None:
    """The kept block (``_take``, ``_took``) meets what a connection does between repeats:
    bodies, heads the full parser takes, blocks the one-step path refused; fed one message per
    feed half the time, so each repeat starts a feed where the one-step path looks first."""
    rnd = random.Random(20261203)
    for _ in range(1000):
        blocks = [kept_block(rnd) for _ in range(rnd.randint(1, 3))]
        parts = [message(rnd, blocks) for _ in range(rnd.randint(1, 8))]
        data = b"".join(parts)
        if rnd.random() < 0.5:
            cuts = [len(b"".join(parts[:i])) for i in range(1, len(parts))]
        else:
            cuts = sorted(rnd.sample(range(1, len(data)), min(len(data) - 1, rnd.randint(0, 8))))
        both(data, cuts, asgi)


def test_a_flood_of_invented_names_leaves_the_common_ones_in_the_table() -> None:
    """The table is seeded with the names that matter in their usual spellings: a client
    that invents names until it is full cannot make every later Host or Range slow."""
    reader = RequestReader()
    for i in range(2 * parser._KEYS_MAX):
        reader.feed(b"GET / HTTP/1.1\r\nX-Flood-%d: 1\r\nHost: h\r\n\r\n" % i)
        reader.ready.clear()
    assert len(parser._KEYS) <= parser._KEYS_MAX
    for name in (b"Host", b"host", b"HOST", b"Range", b"If-None-Match", b"User-Agent",
                 b"Connection", b"Transfer-Encoding", b"Accept", b"Cookie"):
        assert name in parser._KEYS, name
    assert parser._KEYS[b"If-None-Match"] == "if-none-match"
    assert parser._KEYS[b"Content-Length"] == parser._FRAMING
