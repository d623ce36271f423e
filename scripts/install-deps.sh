#!/usr/bin/env bash
# Installs what tapline needs to build and run on Debian 12 (run as root); with --test, also
# every client, server and peer the test suite drives; with --bench, also the load generators
# of scripts/bench/ (wrk, h2load) and perf.
# Idempotent: packages already present are skipped, so a second run takes seconds.
set -euo pipefail
tests=false
bench=false
[ "${1:-}" = "--test" ] && tests=true
[ "${1:-}" = "--bench" ] && bench=true

need_apt=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
build=(clang libbpf-dev bpftool llvm ca-certificates)
test_pkgs=(curl openssl libssl-dev python3-requests jq iproute2 procps util-linux nginx golang-go nghttp2-client)
bench_pkgs=(wrk nginx nghttp2-client openssl util-linux linux-perf)
wanted=("${build[@]}")
if $tests; then wanted+=("${test_pkgs[@]}"); fi
if $bench; then wanted+=("${bench_pkgs[@]}"); fi
for p in "${wanted[@]}"; do
  have_pkg "$p" || need_apt+=("$p")
done
if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

$tests || exit 0


# Python clients used by the end-to-end tests (the python3 on PATH, which may be pyenv's).
if ! python3 -c 'import requests' 2>/dev/null; then
  echo "install-deps: pip install requests" >&2
  python3 -m pip install -q --disable-pip-version-check requests
fi
if ! python3 -c 'import httpx, h2, grpc' 2>/dev/null; then
  echo "install-deps: pip install httpx[http2] grpcio" >&2
  python3 -m pip install -q --disable-pip-version-check 'httpx[http2]' grpcio
fi
# nginx is started by the tests themselves with their own config; keep the distro unit from holding port 80.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q nginx 2>/dev/null; then systemctl stop nginx || true; fi

# Real Forward receivers (Fluent Bit, fluentd) beside the repo, and their runtime packages.
peers="$(cd "$(dirname "$0")/.." && pwd)/../shared/peers"
if [ -f "$peers/install-deps.sh" ]; then
  bash "$peers/install-deps.sh" >/dev/null
fi

# A signature-checking S3 server for the S3 tests (cached in ~/.cargo/bin after the first install).
if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
  echo "install-deps: cargo install s3s-fs@0.14.1 (about 2 minutes)" >&2
  cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi
