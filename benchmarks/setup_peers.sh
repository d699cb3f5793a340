#!/bin/sh
# Install the peers benchmarks/serve_bench.py compares `zcopy serve` against:
# nginx (sendfile on), wrk and valgrind (benchmarks/inline_instructions.py) from Debian, and aiohttp, uvicorn, Starlette (the `peers`
# extra) into the Python environment that runs the benchmark. Debian/Ubuntu, as root.
# Safe to re-run. Usage: benchmarks/setup_peers.sh [PYTHON]   (default: .venv/bin/python)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
python=${1:-$root/.venv/bin/python}
export DEBIAN_FRONTEND=noninteractive
# apt's own lock: wait for another install instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    nginx wrk strace valgrind >/dev/null
# The benchmark runs its own nginx (config, pid file and logs in a temp dir, a free port); a
# system nginx the package may have started is left alone.
"$python" -m pip install -q -e "$root[serve,peers,flamegraph]"
echo "peers ready: $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1);" \
  "$("$python" -c 'import aiohttp, uvicorn, starlette; print("aiohttp", aiohttp.__version__, "uvicorn", uvicorn.__version__, "starlette", starlette.__version__)')"
