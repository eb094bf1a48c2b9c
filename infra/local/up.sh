#!/usr/bin/env bash
# `make up`: installs what is missing, builds the release binaries, starts the whole local
# stack, loads the places file through HAProxy once, waits until the projector has applied
# every place, and prints where everything listens.
#
# The places are loaded once per stream: a marker in .local/state records the load, and it
# counts only while the stream still holds events (a wiped NATS store loads them again).
# Each place carries an Idempotency-Key derived from the file's content, so a load that
# broke off and is re-run within command-api's duplicate window adds no duplicates either.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"
use_state_dir "$LOCAL_DIR"

started_ns=$(date +%s%N)
places=${PLACES:-../shared/data/places-sample.csv}
marker=$STATE_DIR/state/places-loaded.$STACK_STREAM
api=http://127.0.0.1:$STACK_HAPROXY_PORT
projector_status=http://127.0.0.1:$STACK_PROJECTOR_PORT/status

# Events currently in the point stream, from NATS monitoring (0 if the stream is absent).
stream_messages() {
  curl -s --max-time 5 "http://127.0.0.1:$STACK_NATS_MONITOR_PORT/jsz?streams=true" |
    python3 -c '
import json, sys
jsz = json.load(sys.stdin)
print(sum(s.get("state", {}).get("messages", 0)
          for account in jsz.get("account_details") or []
          for s in account.get("stream_detail") or []
          if s.get("name") == sys.argv[1]))' "$STACK_STREAM"
}

load_places_once() {
  local messages key
  [[ -f $places ]] || die "places file not found: $places (relative paths start at the repository root; set PLACES=...)"
  messages=$(stream_messages) || die "cannot read stream state from NATS monitoring on port $STACK_NATS_MONITOR_PORT"
  if [[ -f $marker ]] && ((messages > 0)); then
    say "places already loaded into stream $STACK_STREAM, which holds $messages events (loaded $(<"$marker")); not loading again"
    return 0
  fi
  key=places-$(sha256sum -- "$places" | cut -c 1-16)
  GEOLEDGER_API_TOKEN=$(api_token) "$STACK_BIN_DIR/load-places" --base-url "$api" --wait-projected "$projector_status" \
    --idempotency-prefix "$key" "$places"
  mkdir -p -- "$(dirname -- "$marker")"
  printf 'from %s at %s\n' "$places" "$(date -u +%FT%TZ)" >"$marker"
}

# The base URLs of the given loopback ports, on one line.
urls() {
  local port line=''
  for port in "$@"; do line+="${line:+  }http://127.0.0.1:$port"; done
  printf '%s' "$line"
}

"$SCRIPTS_DIR/install.sh"
if [[ -z ${GEOLEDGER_BIN_DIR:-} ]]; then
  cargo build --release --workspace
fi
"$SCRIPTS_DIR/services.sh" start all
load_places_once

elapsed_ms=$((($(date +%s%N) - started_ns) / 1000000))
cat <<TEXT

geoledger is up:
  API (HAProxy)   $api   writes: POST /point; reads: GET /points, GET /points/{id}
  HAProxy stats   http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/   (Prometheus: /metrics)
  command-api     $(urls "${STACK_CMD_PORTS[@]:0:STACK_CMD_INSTANCES}")
  query-api       $(urls "${STACK_QUERY_PORTS[@]:0:STACK_QUERY_INSTANCES}")
  projector       $projector_status
  NATS            $STACK_NATS_URL   monitoring http://127.0.0.1:$STACK_NATS_MONITOR_PORT/jsz?streams=true
                  users command-api, projector, admin; passwords in .local/nats-credentials
  PostgreSQL      $STACK_DATABASE_URL (owner; the services log in as
                  $STACK_PROJECTOR_LOGIN and $STACK_QUERY_LOGIN)
  logs            .local/log/       stop with: make down

\$ curl -s '$api/points?limit=5'
TEXT
curl -s --max-time 5 "$api/points?limit=5" || say "warning: the sample read through HAProxy failed"
if [[ $STACK_AUTH == on ]]; then
  cat <<TEXT

Writes need the stack's bearer token, kept in ${STATE_DIR#"$GEOLEDGER_ROOT"/}/state/api-token
(GEOLEDGER_STACK_AUTH=off and make restart turn this off):
\$ curl -si $api/point -H "Authorization: Bearer \$(cat $(api_token_file))" \\
    -H 'Content-Type: application/json' -d '{"longitude": 2.3522, "latitude": 48.8566, "name": "Paris"}'
TEXT
fi
printf '\nmake up took %d.%03d s\n' $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
