#!/bin/sh
# Install the peers benchmarks/proxy_bench.py compares zcopy proxy against:
# HAProxy (mode tcp, splice), socat, and Go (to build benchmarks/goproxy).
# Debian/Ubuntu, as root. Safe to re-run.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive
# apt's own lock: wait for another install instead of failing.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq haproxy socat golang-go strace >/dev/null
cd "$here/goproxy"
GO111MODULE=off GOCACHE="${GOCACHE:-/tmp/zcopy-gocache}" go build -o goproxy main.go
echo "peers ready: $(haproxy -v | head -1); $(socat -V | grep 'socat version'); $(go version)"
