#!/usr/bin/env bash
# The servers the test suite runs against, separate from the local stack: a PostgreSQL
# cluster and a nats-server with JetStream, both on loopback, with state under .local/test
# that is wiped at every start so no run sees another's leftovers.
#
#   test-services.sh start|start-postgres|stop|status|env
#
# `env` prints the export lines the tests read (see .env.example).
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
use_state_dir "${GEOLEDGER_TEST_STATE_DIR:-$LOCAL_DIR/test}"

TEST_PG_PORT=${GEOLEDGER_TEST_PG_PORT:-25432}
TEST_NATS_PORT=${GEOLEDGER_TEST_NATS_PORT:-24222}
TEST_NATS_MONITOR_PORT=${GEOLEDGER_TEST_NATS_MONITOR_PORT:-28222}

# Every test creates its own database with its own pool, hence the connection headroom.
# Durability buys nothing for data that is thrown away after the run, so the cluster skips
# fsync and the commit flush to make the many small test transactions cheap.
TEST_PG_SETTINGS=(
  -c max_connections=300
  -c fsync=off
  -c synchronous_commit=off
  -c full_page_writes=off
)

stop_all() {
  nats_stop
  pg_stop
}

start_all() {
  stop_all
  # The PostgreSQL data directory belongs to the PostgreSQL OS account, so it is removed
  # as root or as that account.
  rm -rf -- "$DATA_DIR" "$LOG_DIR"
  use_state_dir "$STATE_DIR"
  pg_start "$TEST_PG_PORT" "${TEST_PG_SETTINGS[@]}"
  nats_start "$TEST_NATS_PORT" "$TEST_NATS_MONITOR_PORT" geoledger-test
}

# PostgreSQL alone, wiped like `start` does, for the read benchmark (loadtests/bench-reads.sh),
# which runs this script with its own GEOLEDGER_TEST_STATE_DIR and port and needs no NATS.
start_postgres() {
  stop_all
  rm -rf -- "$DATA_DIR" "$LOG_DIR"
  use_state_dir "$STATE_DIR"
  pg_start "$TEST_PG_PORT" "${TEST_PG_SETTINGS[@]}"
}

# An absolute path, whether or not the file exists (a missing data file is reported by the
# tests that need it, not here).
absolute() { realpath -m -- "$1"; }

print_env() {
  local sample=${GEOLEDGER_SAMPLE_PLACES:-$GEOLEDGER_ROOT/../shared/data/places-sample.csv}
  local all=${GEOLEDGER_PLACES:-$GEOLEDGER_ROOT/../shared/data/places.csv}
  printf 'export %s=%q\n' \
    GEOLEDGER_TEST_DATABASE_URL "postgres://postgres@127.0.0.1:$TEST_PG_PORT/postgres" \
    GEOLEDGER_TEST_NATS_URL "nats://127.0.0.1:$TEST_NATS_PORT" \
    GEOLEDGER_TEST_NATS_SERVER "$NATS_SERVER_BIN" \
    GEOLEDGER_TEST_HAPROXY "$HAPROXY_BIN" \
    GEOLEDGER_TEST_HAPROXY_CFG "$HAPROXY_CFG" \
    GEOLEDGER_SAMPLE_PLACES "$(absolute "$sample")" \
    GEOLEDGER_PLACES "$(absolute "$all")" \
    GEOLEDGER_TEST_OGRINFO "${GEOLEDGER_TEST_OGRINFO:-$(command -v ogrinfo || printf ogrinfo)}" \
    GEOLEDGER_TEST_OGR2OGR "${GEOLEDGER_TEST_OGR2OGR:-$(command -v ogr2ogr || printf ogr2ogr)}" \
    GEOLEDGER_TEST_PYTHON "${GEOLEDGER_TEST_PYTHON:-$LOCAL_DIR/venv/bin/python}" \
    GEOLEDGER_TEST_SCHEMATHESIS "${GEOLEDGER_TEST_SCHEMATHESIS:-$LOCAL_DIR/venv/bin/st}"
}

show_status() {
  local pid
  if pid=$(running_pid postgres "$DATA_DIR/postgres"); then
    say "test postgres running (pid $pid) on 127.0.0.1:$TEST_PG_PORT"
  else
    say "test postgres stopped"
  fi
  if pid=$(running_pid nats "$NATS_SERVER_BIN"); then
    say "test nats running (pid $pid) on 127.0.0.1:$TEST_NATS_PORT"
  else
    say "test nats stopped"
  fi
}

case ${1:-} in
  start) start_all ;;
  start-postgres) start_postgres ;;
  stop) stop_all ;;
  status) show_status ;;
  env) print_env ;;
  *)
    printf 'usage: %s start|start-postgres|stop|status|env\n' "$0" >&2
    exit 2
    ;;
esac
