#!/usr/bin/env bash
# Starts, stops and reports the local stack: PostgreSQL, NATS, the services and HAProxy,
# each a process of its own with data in .local/data, PIDs in .local/run and logs in
# .local/log.
#
#   services.sh start|stop|status [all|infra|apps|haproxy]
#
# `infra` is PostgreSQL and NATS; `apps` is the projector, command-api and query-api;
# `all` (the default) is both plus HAProxy. Starting is idempotent: whatever is already
# running is left alone, except a service whose binary was rebuilt after it started, which
# is restarted one instance at a time so the other instance keeps serving, and HAProxy when
# its configuration or the shape changed after it started.
#
# The shape is GEOLEDGER_CMD_INSTANCES (1 or 2) command-api and GEOLEDGER_QUERY_INSTANCES
# (1 to 3) query-api, 2 and 2 by default; starting with a smaller shape stops the instances
# left over from a larger one. GEOLEDGER_STACK_STATE_DIR moves the state from .local, so a
# second stack (the load-test smoke run of `make test`) can run beside this one.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
use_state_dir "${GEOLEDGER_STACK_STATE_DIR:-$LOCAL_DIR}"

# Every app instance of the shape as name:binary:port, in start order: the projector first
# because it runs the migrations the readers depend on. With `every`, the largest shape's,
# so that stopping and reporting also find instances a larger shape started.
app_instances() {
  local i cmds=$STACK_CMD_INSTANCES queries=$STACK_QUERY_INSTANCES
  if [[ ${1:-} == every ]]; then cmds=${#STACK_CMD_PORTS[@]} queries=${#STACK_QUERY_PORTS[@]}; fi
  printf 'projector:projector:%s\n' "$STACK_PROJECTOR_PORT"
  for ((i = 0; i < cmds; i++)); do printf 'command-api-%d:command-api:%s\n' $((i + 1)) "${STACK_CMD_PORTS[i]}"; done
  for ((i = 0; i < queries; i++)); do printf 'query-api-%d:query-api:%s\n' $((i + 1)) "${STACK_QUERY_PORTS[i]}"; done
}

start_infra() {
  pg_start "$STACK_PG_PORT"
  # The tables' owner is a superuser because the first migration creates the postgis
  # extension; this is a local development cluster only. The services themselves connect
  # as their own unprivileged login roles (migrate_and_grant).
  if [[ -z $(pg_psql "$STACK_PG_PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'geoledger'") ]]; then
    pg_psql "$STACK_PG_PORT" -c 'CREATE ROLE geoledger LOGIN SUPERUSER'
  fi
  if [[ -z $(pg_psql "$STACK_PG_PORT" -tAc "SELECT 1 FROM pg_database WHERE datname = 'geoledger'") ]]; then
    pg_psql "$STACK_PG_PORT" -c 'CREATE DATABASE geoledger OWNER geoledger'
  fi
  nats_start "$STACK_NATS_PORT" "$STACK_NATS_MONITOR_PORT" geoledger-local "$(nats_auth_config)"
}

# The stack's NATS users: command-api and projector, each with only the permissions its
# service needs (infra/local/nats-auth.sh), and admin for the operator commands. Their
# passwords are made once and kept, readable by the owner only, in NATS_CREDENTIALS, which
# can be sourced. The configuration is written anew at every start, so that a changed
# GEOLEDGER_STREAM or GEOLEDGER_SUBJECT_PREFIX reaches the permissions; a running server keeps
# the one it started with.
NATS_CREDENTIALS=$STATE_DIR/nats-credentials
nats_auth_config() {
  local conf=$DATA_DIR/nats-auth.conf who
  if [[ ! -s $NATS_CREDENTIALS ]]; then
    (
      umask 077
      for who in COMMAND PROJECTOR ADMIN; do
        printf 'GEOLEDGER_NATS_%s_PASSWORD=%s\n' "$who" "$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
      done >"$NATS_CREDENTIALS"
    )
  fi
  (
    umask 077
    set -a
    # shellcheck source=/dev/null
    . "$NATS_CREDENTIALS"
    "$SCRIPTS_DIR/nats-auth.sh" "$STACK_STREAM" "$STACK_SUBJECT_PREFIX" \
      "${GEOLEDGER_CONSUMER:-points-projector}" >"$conf"
  ) || die "writing $conf failed"
  printf '%s\n' "$conf"
}

# The NATS user and password a service connects as, as env assignments; none when this state
# has no credentials (a stack started over a server without authorization, as the load-test
# smoke run is).
nats_user_env() {
  local user var
  [[ -s $NATS_CREDENTIALS ]] || return 0
  case $1 in
    command-api) user=command-api var=GEOLEDGER_NATS_COMMAND_PASSWORD ;;
    projector) user=projector var=GEOLEDGER_NATS_PROJECTOR_PASSWORD ;;
    *) return 0 ;;
  esac
  printf '%s\n' "GEOLEDGER_NATS_USER=$user" \
    "GEOLEDGER_NATS_PASSWORD=$(sed -n "s/^$var=//p" -- "$NATS_CREDENTIALS")"
}

# The one-shot step before the services start, as in Compose and Helm: the migrations, run as
# the tables' owner, which create the group roles geoledger_projector and geoledger_reader;
# then the services' login roles, members of those. The cluster trusts loopback connections,
# so the login roles have no password here (Compose and Helm give them one).
migrate_and_grant() {
  local bin=$STACK_BIN_DIR/projector log=$LOG_DIR/migrate.log
  [[ -x $bin ]] || die "$bin is missing; run: cargo build --release --workspace"
  printf '\n=== %s migrate\n' "$(date -u +%FT%TZ)" >>"$log"
  GEOLEDGER_DATABASE_URL="$STACK_DATABASE_URL" GEOLEDGER_LOG_FORMAT=text RUST_LOG=warn \
    "$bin" migrate >>"$log" 2>&1 || die_with_log "migrations failed" "$log"
  pg_psql "$STACK_PG_PORT" -v ON_ERROR_STOP=1 <<SQL
DO \$\$
BEGIN
  CREATE ROLE $STACK_PROJECTOR_LOGIN LOGIN IN ROLE geoledger_projector;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END \$\$;
DO \$\$
BEGIN
  CREATE ROLE $STACK_QUERY_LOGIN LOGIN IN ROLE geoledger_reader;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END \$\$;
SQL
}

# The database URL each service connects with: its own login role's. command-api has none.
database_url_of() {
  case $1 in
    projector) printf '%s' "$STACK_PROJECTOR_DATABASE_URL" ;;
    query-api) printf '%s' "$STACK_QUERY_DATABASE_URL" ;;
    *) printf '' ;;
  esac
}

start_app() {
  local name=$1 bin=$STACK_BIN_DIR/$2 port=$3 log=$LOG_DIR/$1.log pid
  [[ -x $bin ]] || die "$bin is missing; run: cargo build --release --workspace"
  if pid=$(running_pid "$name" "/$2"); then
    if [[ $bin -nt $(pid_file "$name") ]]; then
      say "$name: binary rebuilt since it started; restarting"
      stop_process "$name" "/$2" 30
    else
      say "$name already running (pid $pid)"
      wait_healthy "$name" "http://127.0.0.1:$port/status" "$log" 60 "$pid"
      return 0
    fi
  fi
  require_free_port "$name" "$port"
  say "$name: starting on 127.0.0.1:$port"
  local nats_user=() auth=()
  mapfile -t nats_user < <(nats_user_env "$2")
  if [[ $STACK_AUTH == on ]]; then auth=(GEOLEDGER_AUTH_TOKENS_FILE="$(api_token_hashes)"); fi
  # One tokio worker per process unless told otherwise: this stack puts five or six Rust
  # processes, PostgreSQL, NATS and HAProxy on one machine, where each runtime's default of a
  # worker per CPU mostly adds thread switches. On 2 CPUs the 80/20 list mix went from 5,583
  # and 5,937 requests/s to 6,227 and 6,776 (loadtests/README.md). A machine of its own per
  # service (the chart's pods) keeps tokio's default.
  spawn "$name" "$log" env "${nats_user[@]}" "${auth[@]}" \
    TOKIO_WORKER_THREADS="${TOKIO_WORKER_THREADS:-1}" \
    GEOLEDGER_LISTEN="127.0.0.1:$port" \
    GEOLEDGER_LOG_FORMAT="${GEOLEDGER_LOG_FORMAT:-text}" \
    RUST_LOG="${RUST_LOG:-info}" \
    GEOLEDGER_NATS_URL="$STACK_NATS_URL" \
    GEOLEDGER_STREAM="$STACK_STREAM" \
    GEOLEDGER_SUBJECT_PREFIX="$STACK_SUBJECT_PREFIX" \
    GEOLEDGER_DATABASE_URL="$(database_url_of "$2")" \
    "$bin"
  wait_healthy "$name" "http://127.0.0.1:$port/status" "$log" 60 "$(<"$(pid_file "$name")")"
}

start_apps() {
  local name bin port
  migrate_and_grant
  ensure_api_token
  while IFS=: read -r name bin port; do
    start_app "$name" "$bin" "$port"
  done < <(app_instances)
  # Instances beyond the shape are stopped after the shape's own are up, so serving never
  # pauses while the shape shrinks; HAProxy stops sending to them when it restarts.
  while IFS=: read -r name bin port; do
    stop_process "$name" "/$bin" 30
  done < <(app_instances every | grep -vxF -f <(app_instances))
}

stop_apps() {
  local name bin port
  while IFS=: read -r name bin port; do
    stop_process "$name" "/$bin" 30
  done < <(app_instances every | tac)
}

# The config has two server lines per service and a third query-api line only when
# GEOLEDGER_QUERY_3 is set; a single instance is named on both lines.
haproxy_env() {
  export GEOLEDGER_HAPROXY_BIND=127.0.0.1:$STACK_HAPROXY_PORT
  export GEOLEDGER_HAPROXY_STATS_BIND=127.0.0.1:$STACK_HAPROXY_STATS_PORT
  export GEOLEDGER_HAPROXY_RATE_LIMIT=$STACK_HAPROXY_RATE_LIMIT
  export GEOLEDGER_CMD_1=127.0.0.1:${STACK_CMD_PORTS[0]}
  export GEOLEDGER_CMD_2=127.0.0.1:${STACK_CMD_PORTS[STACK_CMD_INSTANCES - 1]}
  export GEOLEDGER_QUERY_1=127.0.0.1:${STACK_QUERY_PORTS[0]}
  export GEOLEDGER_QUERY_2=127.0.0.1:${STACK_QUERY_PORTS[STACK_QUERY_INSTANCES > 1 ? 1 : 0]}
  unset GEOLEDGER_QUERY_3
  if ((STACK_QUERY_INSTANCES > 2)); then
    export GEOLEDGER_QUERY_3=127.0.0.1:${STACK_QUERY_PORTS[2]}
  fi
}

# The shape HAProxy was started for, to tell whether it must restart for another.
haproxy_shape() { printf '%s+%s\n' "$STACK_CMD_INSTANCES" "$STACK_QUERY_INSTANCES"; }

start_haproxy() {
  local log=$LOG_DIR/haproxy.log shape_file=$RUN_DIR/haproxy.shape pid
  if pid=$(running_pid haproxy "$HAPROXY_CFG") && [[ $HAPROXY_CFG -nt $(pid_file haproxy) ]]; then
    say "haproxy: configuration changed since it started; restarting"
    stop_process haproxy "$HAPROXY_CFG" 10
  fi
  if pid=$(running_pid haproxy "$HAPROXY_CFG") && [[ $(cat -- "$shape_file" 2>/dev/null) != "$(haproxy_shape)" ]]; then
    say "haproxy: started for another shape; restarting for $(haproxy_shape)"
    stop_process haproxy "$HAPROXY_CFG" 10
  fi
  if pid=$(running_pid haproxy "$HAPROXY_CFG"); then
    say "haproxy already running (pid $pid)"
  else
    haproxy_env
    "$HAPROXY_BIN" -c -q -f "$HAPROXY_CFG" || die "haproxy rejects $HAPROXY_CFG"
    require_free_port haproxy "$STACK_HAPROXY_PORT"
    require_free_port haproxy-stats "$STACK_HAPROXY_STATS_PORT"
    say "haproxy: starting on 127.0.0.1:$STACK_HAPROXY_PORT (stats 127.0.0.1:$STACK_HAPROXY_STATS_PORT)"
    spawn haproxy "$log" "$HAPROXY_BIN" -db -f "$HAPROXY_CFG"
    haproxy_shape >"$shape_file"
    pid=$(<"$(pid_file haproxy)")
    wait_healthy haproxy "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/" "$log" 15 "$pid"
  fi
  wait_backends_up "$log" 30
}

# HAProxy's own health checks decide routing; waiting for them means the first request
# through it is not sent to an instance it still believes is down.
wait_backends_up() {
  local log=$1 timeout=$2 deadline down
  deadline=$((SECONDS + timeout))
  while :; do
    down=$(curl -s --max-time 2 "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/;csv" |
      awk -F, '($1 == "command_api" || $1 == "query_api") && $2 != "BACKEND" && $18 !~ /^UP/ { printf "%s(%s) ", $2, $18 }
                END { if (NR == 0) print "no-stats" }')
    [[ -z $down ]] && return 0
    if ((SECONDS >= deadline)); then
      die_with_log "haproxy still reports these servers not up after ${timeout}s: $down" "$log"
    fi
    sleep 0.5
  done
}

show_status() {
  local name bin port pid code
  report() { printf '  %-14s %-26s %s\n' "$1" "$2" "$3"; }
  say "local stack (state in ${STATE_DIR#"$GEOLEDGER_ROOT"/}, shape $(haproxy_shape)):"
  if pid=$(running_pid postgres "$DATA_DIR/postgres"); then
    report postgres "running (pid $pid)" "127.0.0.1:$STACK_PG_PORT  $STACK_DATABASE_URL"
  else report postgres stopped ""; fi
  if pid=$(running_pid nats "$NATS_SERVER_BIN"); then
    report nats "running (pid $pid)" "$STACK_NATS_URL  monitoring http://127.0.0.1:$STACK_NATS_MONITOR_PORT"
  else report nats stopped ""; fi
  while IFS=: read -r name bin port; do
    if pid=$(running_pid "$name" "/$bin"); then
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/status" || true)
      report "$name" "running (pid $pid)" "http://127.0.0.1:$port  /status $code"
    else report "$name" stopped ""; fi
  done < <(app_instances every)
  if pid=$(running_pid haproxy "$HAPROXY_CFG"); then
    report haproxy "running (pid $pid)" "http://127.0.0.1:$STACK_HAPROXY_PORT  stats http://127.0.0.1:$STACK_HAPROXY_STATS_PORT"
    curl -s --max-time 2 "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/;csv" |
      awk -F, '($1 == "command_api" || $1 == "query_api") { printf "    %-12s %-14s %s\n", $1, $2, $18 }'
  else report haproxy stopped ""; fi
}

action=${1:-status}
scope=${2:-all}
case $action:$scope in
  start:infra) start_infra ;;
  start:apps) start_apps ;;
  start:haproxy) start_haproxy ;;
  start:all) start_infra && start_apps && start_haproxy ;;
  stop:apps) stop_apps ;;
  stop:haproxy) stop_process haproxy "$HAPROXY_CFG" 10 ;;
  stop:infra) nats_stop && pg_stop ;;
  stop:all) stop_apps && stop_process haproxy "$HAPROXY_CFG" 10 && nats_stop && pg_stop ;;
  status:*) show_status ;;
  *)
    printf 'usage: %s start|stop|status [all|infra|apps|haproxy]\n' "$0" >&2
    exit 2
    ;;
esac
