#!/usr/bin/env bash
# `make bench`: builds bench-reads, starts a PostgreSQL of its own, runs the read benchmark
# against it and stops the server again however the run ends. The server is the test
# servers' PostgreSQL (infra/local/test-services.sh) under another state folder and port, so
# a `make test` can run meanwhile without either wiping the other's cluster. Arguments are
# passed on to bench-reads (see loadtests/README.md).
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"
export GEOLEDGER_TEST_STATE_DIR=${GEOLEDGER_BENCH_STATE_DIR:-$root/.local/bench}
export GEOLEDGER_TEST_PG_PORT=${GEOLEDGER_BENCH_PG_PORT:-26432}
services=infra/local/test-services.sh

# Built before the server starts, so a compile error leaves nothing running.
cargo build --release -p loadtests --bin bench-reads

stop_postgres() {
  local status=$?
  "$services" stop || true
  exit "$status"
}
trap stop_postgres EXIT
# An interrupt becomes an ordinary exit, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM
"$services" start-postgres
eval "$("$services" env)"
"${CARGO_TARGET_DIR:-target}/release/bench-reads" \
  --database-url "$GEOLEDGER_TEST_DATABASE_URL" --places "$GEOLEDGER_PLACES" "$@"
