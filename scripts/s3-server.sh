#!/usr/bin/env bash
# Starts a local, signature-checking S3 server (s3s-fs) for tests and demos.
#
#   scripts/s3-server.sh DIR PORT [ACCESS_KEY [SECRET_KEY]]
#
# DIR is the data root: every directory directly under it is a bucket (mkdir DIR/mybucket,
# or CreateBucket through the API). Path-style addressing: http://127.0.0.1:PORT/BUCKET/KEY.
# Keys default to AK / SK. s3s-fs 0.14.1 is installed with cargo when missing (reusing
# $S3S_FS_BIN, s3s-fs on PATH or ~/.cargo/bin/s3s-fs; the first install takes ~2 minutes).
# The server runs in the background, logging to DIR.s3s-fs.log; the script waits until the
# port accepts connections and prints the server's PID on stdout (stop it with kill PID).
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 DIR PORT [ACCESS_KEY [SECRET_KEY]]" >&2
  exit 2
fi
dir=$1
port=$2
ak=${3:-AK}
sk=${4:-SK}
version=0.14.1

bin=${S3S_FS_BIN:-}
if [ -z "$bin" ]; then
  if command -v s3s-fs >/dev/null 2>&1; then
    bin=$(command -v s3s-fs)
  else
    bin="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
  fi
fi
if [ ! -x "$bin" ]; then
  # One install at a time when several tests start servers at once.
  lock="${TMPDIR:-/tmp}/tapline-s3s-fs-install.lock"
  (
    flock 9
    if [ ! -x "$bin" ]; then
      echo "s3-server.sh: installing s3s-fs $version (cargo install, about 2 minutes)" >&2
      cargo install "s3s-fs@$version" --features binary --locked --quiet >&2
    fi
  ) 9>"$lock"
  bin="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
fi

mkdir -p "$dir"
log="${dir%/}.s3s-fs.log"
# Detached from our stdout/stderr so that a caller reading our output is not held open.
nohup "$bin" --host 127.0.0.1 --port "$port" --access-key "$ak" --secret-key "$sk" "$dir" \
  </dev/null >"$log" 2>&1 &
pid=$!

for _ in $(seq 1 300); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "s3-server.sh: s3s-fs exited; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$pid"
    exit 0
  fi
  sleep 0.1
done
echo "s3-server.sh: s3s-fs did not accept connections on port $port within 30 s; log: $log" >&2
kill "$pid" 2>/dev/null || true
exit 1
