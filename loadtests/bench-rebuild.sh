#!/usr/bin/env bash
# The replay benchmark: builds bench-rebuild, starts a PostgreSQL and a NATS of its own (the
# test servers of infra/local/test-services.sh under another state folder and ports, so a
# `make test` can run meanwhile), publishes a million events, times `rebuild` and a plain COPY
# of the same rows, and stops the servers however the run ends. Arguments go to bench-rebuild
# (see loadtests/README.md).
set -euo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd -- "$root"
export GEOLEDGER_TEST_STATE_DIR=${GEOLEDGER_BENCH_STATE_DIR:-$root/.local/bench-rebuild}
export GEOLEDGER_TEST_PG_PORT=${GEOLEDGER_BENCH_PG_PORT:-26433}
export GEOLEDGER_TEST_NATS_PORT=${GEOLEDGER_BENCH_NATS_PORT:-26423}
export GEOLEDGER_TEST_NATS_MONITOR_PORT=${GEOLEDGER_BENCH_NATS_MONITOR_PORT:-26424}
services=infra/local/test-services.sh

# Built before the servers start, so a compile error leaves nothing running.
cargo build --release -p loadtests --bin bench-rebuild

stop_services() {
  local status=$?
  "$services" stop || true
  exit "$status"
}
trap stop_services EXIT
# An interrupt becomes an ordinary exit, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM
"$services" start
eval "$("$services" env)"
"${CARGO_TARGET_DIR:-target}/release/bench-rebuild" \
  --database-url "$GEOLEDGER_TEST_DATABASE_URL" --nats-url "$GEOLEDGER_TEST_NATS_URL" \
  --places "$GEOLEDGER_PLACES" "$@"
