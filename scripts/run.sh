#!/usr/bin/env bash
# Installs what is missing, builds tapline and runs it (as root) on its embedded default:
# events as NDJSON on stdout, HttpTransaction objects in ./tapline-data/objects.
# Extra arguments go to tapline, e.g. `scripts/run.sh --config qtap.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bin tapline --quiet
exec ./target/release/tapline "$@"
