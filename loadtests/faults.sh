#!/usr/bin/env bash
# `make faults`: proves that no accepted write is lost or doubled while processes die and
# servers restart. Starts a whole stack of real processes of its own on free loopback ports
# (a PostgreSQL cluster, nats-server with JetStream on disk, one projector, two command-api,
# two query-api, HAProxy with infra/haproxy/haproxy.cfg), then runs the `faults` driver
# (loadtests/src/faults.rs), which writes and reads through HAProxy while it breaks and heals
# the stack one fault at a time through this script's `inject` command:
#
#   faults.sh                          the whole run; stops and deletes everything at the end
#   faults.sh inject FAULT break|heal  used by the driver: FAULT is projector, postgres,
#                                      nats or instances
#
# The services are debug builds, like the load-test smoke run's. State goes to
# GEOLEDGER_FAULTS_STATE_DIR, else $GEOLEDGER_TEST_STATE_DIR/faults, else .local/test/faults;
# as root, when the PostgreSQL account cannot reach the checkout, to a temporary folder.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../infra/local/lib.sh"

services=$SCRIPTS_DIR/services.sh

# Every app instance of the stack must still run after a fault that did not kill it: a
# process that exits when PostgreSQL or NATS goes away is a failure in itself, which
# restarting it would hide.
check_apps_alive() {
  local name bin dead=()
  for name in projector command-api-1 command-api-2 query-api-1 query-api-2; do
    bin=${name%-[0-9]}
    running_pid "$name" "/$bin" >/dev/null || dead+=("$name")
  done
  if ((${#dead[@]} > 0)); then
    say "exited during the fault: ${dead[*]}"
    return 1
  fi
}

# Returns once HAProxy's own checks see every instance up again (it took the instances
# that answered 503 out of rotation), so that the next fault starts from a whole stack
# and its figures are its own.
backends_up() { "$services" start haproxy; }

kill_app() {
  local pid
  pid=$(running_pid "$1" "/$2") || die "$1 is not running, so it cannot be killed"
  say "kill -9 $1 (pid $pid)"
  kill -KILL "$pid"
}

inject() {
  use_state_dir "${GEOLEDGER_STACK_STATE_DIR:?inject runs inside a faults.sh run}"
  # Recorded so that a run that is interrupted can stop an injection under way before it
  # stops the stack, rather than have it start an app again afterwards.
  printf '%s\n' "$$" >"$(pid_file inject)"
  case $1:$2 in
    projector:break) kill_app projector projector ;;
    projector:heal) "$services" start apps ;;
    postgres:break)
      # Immediate mode is a crash as the server sees it: no checkpoint, recovery from the
      # write-ahead log at the next start.
      say "stopping postgres (immediate)"
      as_pg_user "$PG_BINDIR/pg_ctl" stop -D "$DATA_DIR/postgres" -m immediate -w -t 60 >/dev/null
      ;;
    postgres:heal)
      pg_start "$STACK_PG_PORT"
      check_apps_alive
      backends_up
      ;;
    nats:break)
      local pid
      pid=$(running_pid nats "$NATS_SERVER_BIN") || die "nats is not running"
      say "kill -9 nats (pid $pid)"
      kill -KILL "$pid"
      ;;
    nats:heal)
      nats_start "$STACK_NATS_PORT" "$STACK_NATS_MONITOR_PORT" geoledger-faults
      check_apps_alive
      backends_up
      ;;
    instances:break)
      kill_app command-api-1 command-api
      kill_app query-api-1 query-api
      ;;
    instances:heal)
      "$services" start apps
      backends_up
      ;;
    *) die "unknown fault or phase: $1 $2" ;;
  esac
}

run() {
  # Global, not local: the EXIT trap reads it after run has returned.
  state=${GEOLEDGER_FAULTS_STATE_DIR:-}
  if [[ -z $state ]]; then
    state=${GEOLEDGER_TEST_STATE_DIR:-$LOCAL_DIR/test}/faults
    if ((EUID == 0)) && ! runuser -u "$PG_OS_USER" -- test -x "$GEOLEDGER_ROOT"; then
      # A checkout under a private home (/root) is out of the PostgreSQL account's reach.
      state=$(mktemp -d /tmp/geoledger-faults.XXXXXX)
      chmod 755 -- "$state"
    fi
  fi
  export GEOLEDGER_STACK_STATE_DIR=$state

  # Ports the kernel hands out as free now; the stack binds them a moment later.
  local ports
  read -r -a ports < <(free_ports 10)
  export GEOLEDGER_PG_PORT=${ports[0]} GEOLEDGER_NATS_PORT=${ports[1]}
  export GEOLEDGER_NATS_MONITOR_PORT=${ports[2]} GEOLEDGER_HAPROXY_PORT=${ports[3]}
  export GEOLEDGER_HAPROXY_STATS_PORT=${ports[4]} GEOLEDGER_CMD_1_PORT=${ports[5]}
  export GEOLEDGER_CMD_2_PORT=${ports[6]} GEOLEDGER_QUERY_1_PORT=${ports[7]}
  export GEOLEDGER_QUERY_2_PORT=${ports[8]} GEOLEDGER_PROJECTOR_PORT=${ports[9]}
  export GEOLEDGER_CMD_INSTANCES=2 GEOLEDGER_QUERY_INSTANCES=2
  export GEOLEDGER_BIN_DIR=${CARGO_TARGET_DIR:-$GEOLEDGER_ROOT/target}/debug
  export RUST_LOG=${RUST_LOG:-warn}
  # lib.sh read the ports before they were exported here.
  # shellcheck source=infra/local/lib.sh
  . "$SCRIPTS_DIR/lib.sh"

  cargo build --quiet -p projector -p command-api -p query-api -p loadtests --bins

  stop_stack() {
    local status=$?
    if [[ -n ${driver:-} ]] && alive "$driver"; then
      kill -TERM "$driver" 2>/dev/null || true
      RUN_DIR=$state/run stop_process inject faults.sh 30
    fi
    "$services" stop all || true
    if ((status == 0)); then
      rm -rf -- "$state"
    else
      say "the stack's logs are kept in $state/log"
    fi
    exit "$status"
  }
  trap stop_stack EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # A run never reuses another's data: a stream or table left over would be counted.
  "$services" stop all
  rm -rf -- "$state/data" "$state/log" "$state/run"
  "$services" start all
  # The stack wants a token for writes unless GEOLEDGER_STACK_AUTH=off; the driver sends it.
  # It lies in the stack's state folder, which this script's own variables must name first.
  use_state_dir "$state"
  GEOLEDGER_API_TOKEN=$(api_token)
  export GEOLEDGER_API_TOKEN

  local places=${GEOLEDGER_PLACES:-$(realpath -m -- "$GEOLEDGER_ROOT/../shared/data/places.csv")}
  if [[ ! -f $places ]]; then
    places=$(realpath -m -- "$GEOLEDGER_ROOT/../shared/data/places-sample.csv")
  fi
  local extra
  read -r -a extra <<<"${GEOLEDGER_FAULTS_ARGS:-}"
  # Every wait of the driver is bounded (writes 75 s, catch-up 60 s, each start 60 s); this
  # bounds their sum, in case a wait outside them hangs.
  # In the background, so that an interrupt or a TERM reaches the traps at once rather than
  # after the driver ends; the EXIT trap then stops the driver too.
  timeout 900 "$GEOLEDGER_BIN_DIR/faults" \
    --base-url "http://127.0.0.1:$STACK_HAPROXY_PORT" \
    --database-url "$STACK_DATABASE_URL" \
    --projector-status "http://127.0.0.1:$STACK_PROJECTOR_PORT/status" \
    --places "$places" \
    --inject "$GEOLEDGER_ROOT/loadtests/faults.sh" \
    "${extra[@]}" &
  driver=$!
  wait "$driver"
}

case ${1:-run} in
  run) run ;;
  inject)
    (($# == 3)) || die "usage: $0 inject FAULT break|heal"
    inject "$2" "$3"
    ;;
  *)
    printf 'usage: %s [run | inject FAULT break|heal]\n' "$0" >&2
    exit 2
    ;;
esac
