#!/usr/bin/env bash
# Runs every test of tapline: formatting, lints, unit tests, and the end-to-end suite
# (real eBPF, real clients and servers). Run as root on Linux with BTF.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
if [ "$(id -u)" != 0 ]; then
  echo "test.sh: the end-to-end tests load eBPF programs: run as root" >&2
  exit 1
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo build"
cargo build --workspace --bins --quiet
# The end-to-end suite runs the optimised agent, as users do (load tests like h2load's
# 10,000 requests need it); TAPLINE_BIN may name another build.
cargo build --release --bin tapline --quiet
export TAPLINE_BIN="${TAPLINE_BIN:-$PWD/target/release/tapline}"
# The Forward interop tests need the real peers in ../shared/peers: absent peers fail the run
# (set TAPLINE_REQUIRE_PEERS= to let them be skipped, with a message, on a machine without them).
export TAPLINE_REQUIRE_PEERS="${TAPLINE_REQUIRE_PEERS-1}"
echo "== tests (agent: $TAPLINE_BIN)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast -- --test-threads=1
fi
# A coarse guard against throughput regressions: the userspace pipeline benchmark in quick
# mode fails below half of its recorded figures (docs/benchmarks.md).
echo "== pipeline benchmark (quick)"
TAPLINE_BENCH_QUICK=1 cargo bench -p tapline --bench pipeline --quiet
