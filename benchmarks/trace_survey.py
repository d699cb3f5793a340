"""Survey: which popular Python servers serve a big file on the fast path? (docs/trace.md)

Each server runs under ``zcopy trace --json``, serves one big file a few times
to a client in this process (untraced), is stopped with SIGINT, and the
verdict is tabulated. Nothing is installed here: the servers come from the
``survey`` extra (``pip install -e '.[survey]'``); a missing one is reported
as skipped. Run from the repository root:

    python benchmarks/trace_survey.py            # markdown table on stdout
    python benchmarks/trace_survey.py --only aiohttp --size-mib 256
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT, http_get, version, wait_listening

from zcopy.tools._proc import free_port
from zcopy.tools.report import percent


@dataclass(frozen=True)
class Server:
    """One surveyed server: how to write its app and start it on a port."""

    name: str
    needs: tuple[str, ...]  # distributions that must be installed
    app: str  # source of app.py ("" when the server needs no app); {path} is the file
    argv: tuple[str, ...]  # {py} python, {port}, {dir} served directory, {app} app dir

    def missing(self) -> list[str]:
        return [d for d in self.needs if importlib.util.find_spec(d.replace("-", "_")) is None]


AIOHTTP_APP = """
from aiohttp import web
async def big(request):
    return web.FileResponse({path!r})
app = web.Application()
app.router.add_get("/big.bin", big)
if __name__ == "__main__":
    import sys
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route
async def big(request):
    return FileResponse({path!r})
app = Starlette(routes=[Route("/big.bin", big)])
"""

# The two WSGI apps differ only in how the body leaves: the same head, then their return.
WSGI_HEAD = """
import os
def app(environ, start_response):
    f = open({path!r}, "rb")
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
"""

WSGI_FILE_WRAPPER_APP = WSGI_HEAD + """\
    return environ["wsgi.file_wrapper"](f, 1 << 20)
"""

WSGI_ITERABLE_APP = WSGI_HEAD + """\
    def chunks():
        with f:
            while block := f.read(1 << 16):
                yield block
    return chunks()
"""

SERVERS = (
    Server(
        "python -m http.server",
        (),
        "",
        ("{py}", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "--directory", "{dir}"),
    ),
    Server("aiohttp FileResponse", ("aiohttp",), AIOHTTP_APP, ("{py}", "{app}/app.py", "{port}")),
    Server(
        "uvicorn + Starlette FileResponse",
        ("uvicorn", "starlette"),
        STARLETTE_APP,
        ("{py}", "-m", "uvicorn", "app:app", "--app-dir", "{app}", "--host", "127.0.0.1",
         "--port", "{port}", "--log-level", "warning"),
    ),
    Server(
        "gunicorn, wsgi.file_wrapper",
        ("gunicorn",),
        WSGI_FILE_WRAPPER_APP,
        ("{py}", "-m", "gunicorn", "--chdir", "{app}", "-w", "1", "-b", "127.0.0.1:{port}",
         "app:app"),
    ),
    Server(
        "gunicorn, iterable of 64 KiB chunks",
        ("gunicorn",),
        WSGI_ITERABLE_APP,
        ("{py}", "-m", "gunicorn", "--chdir", "{app}", "-w", "1", "-b", "127.0.0.1:{port}",
         "app:app"),
    ),
    Server(
        "zcopy serve",
        ("zcopy.serve",),
        "",
        ("{py}", "-m", "zcopy.cli", "serve", "{dir}", "--port", "{port}", "--bind", "127.0.0.1"),
    ),
)


def survey_one(server: Server, big: Path, requests: int, workdir: Path) -> dict[str, object]:
    """Trace one server serving ``big`` ``requests`` times; the ``zcopy trace`` report."""
    appdir = workdir / server.name.split()[0].replace("-", "_")
    appdir.mkdir(exist_ok=True)
    if server.app:
        (appdir / "app.py").write_text(textwrap.dedent(server.app.format(path=str(big))))
    port = free_port()
    fill = {"py": sys.executable, "port": str(port), "dir": str(big.parent), "app": str(appdir)}
    argv = [a.format(**fill) for a in server.argv]
    report = workdir / f"{appdir.name}-{port}.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    log = open(workdir / f"{appdir.name}-{port}.log", "wb")  # noqa: SIM115 - kept for the run
    proc = subprocess.Popen(
        [sys.executable, "-m", "zcopy.cli", "trace", "--backend", "strace", "--json",
         "-o", str(report), "--", *argv],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc, 60)
        buf = bytearray(1 << 20)
        for _ in range(requests):
            status, got = http_get(port, "/big.bin", buf)
            if status != 200 or got != big.stat().st_size:
                raise RuntimeError(f"GET /big.bin: status {status}, {got} bytes")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)
        log.close()
    result: dict[str, object] = json.loads(report.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=64, help="size of the served file")
    parser.add_argument("--requests", type=int, default=3, help="downloads per server")
    parser.add_argument("--only", help="survey only servers whose name contains this")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(prefix="zcopy-survey-") as tmp:
        work = Path(tmp)
        site = work / "site"
        site.mkdir()
        big = site / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        for server in SERVERS:
            if args.only and args.only not in server.name:
                continue
            missing = server.missing()
            if missing:
                rows.append((server.name, "skipped", "-", "-", f"not installed: {missing}"))
                continue
            print(f"surveying {server.name} ...", file=sys.stderr, flush=True)
            r = survey_one(server, big, args.requests, work)
            share = r["zero_copy_share"]
            calls = r["syscalls"]
            assert isinstance(calls, dict)
            top = sorted(calls.items(), key=lambda kv: -kv[1]["bytes"])[:3]
            seen = ", ".join(f"{name} x{row['calls']:,}" for name, row in top)
            rows.append((
                server.name,
                str(r["verdict"]),
                "-" if share is None else percent(float(str(share))),
                seen,
                str(r["telltale"]),
            ))

    versions = ", ".join(f"{d} {version(d)}" for d in ("aiohttp", "uvicorn", "starlette",
                                                        "gunicorn"))
    print(
        f"{args.requests} x {args.size_mib} MiB over 127.0.0.1, "
        f"Python {platform.python_version()}, Linux {platform.release()}; {versions}\n"
    )
    print("| server | verdict | zero-copy share | biggest syscalls (calls) | telltale |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
