#!/usr/bin/env bash
# Measures each deployment shape in turn on the local stack: 1 command-api + 1 query-api,
# 2 + 2, and 2 + 3. For each: bench-api's throughput scenarios, the GuideUser Locust ramp,
# and the 80/20 mix once more (a second sample on a shared machine). On 2 + 2 also the
# end-to-end write latency, twice, and the projector's drain rate. Leaves the stack at 2 + 2.
#
#   loadtests/shapes.sh            # about half an hour with the default ramp
#
# Needs `make up` first (binaries and data). Output goes to stdout and, for Locust, to
# .local/loadtests as run.sh writes it. The ramp's ceiling and step default higher than
# run.sh's (1200 and 100) so that the steps reach past what the machine carries.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../infra/local/lib.sh"
use_state_dir "${GEOLEDGER_STACK_STATE_DIR:-$LOCAL_DIR}"

export GEOLEDGER_RAMP_CEILING=${GEOLEDGER_RAMP_CEILING:-1200}
export GEOLEDGER_RAMP_STEP=${GEOLEDGER_RAMP_STEP:-100}
export GEOLEDGER_RAMP_HOLD_SECS=${GEOLEDGER_RAMP_HOLD_SECS:-12}
export GEOLEDGER_BIN_DIR=$STACK_BIN_DIR
bench=("$STACK_BIN_DIR/bench-api"
  --base-url "http://127.0.0.1:$STACK_HAPROXY_PORT"
  --haproxy-stats "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/"
  --nats-monitor "http://127.0.0.1:$STACK_NATS_MONITOR_PORT"
  --projector-status "http://127.0.0.1:$STACK_PROJECTOR_PORT/status"
  --database-url "$STACK_DATABASE_URL")

for shape in 1+1 2+2 2+3; do
  export GEOLEDGER_CMD_INSTANCES=${shape%+*} GEOLEDGER_QUERY_INSTANCES=${shape#*+}
  printf '\n===== shape %s command-api + %s query-api, %s\n' \
    "$GEOLEDGER_CMD_INSTANCES" "$GEOLEDGER_QUERY_INSTANCES" "$(date -u +%FT%TZ)"
  "$SCRIPTS_DIR/services.sh" start all
  "${bench[@]}" throughput
  "$GEOLEDGER_ROOT/loadtests/locust/run.sh" GuideUser || true
  "${bench[@]}" throughput --scenario mix
  if [[ $shape == 2+2 ]]; then
    "${bench[@]}" write-latency
    # The drain as bench-api.sh --drain does it: a backlog written while the projector is
    # stopped, then its catch-up timed.
    stop_process projector /projector 30
    "${bench[@]}" throughput --scenario post --duration-secs 15 --warmup-secs 0
    "$SCRIPTS_DIR/services.sh" start apps
    "${bench[@]}" projector-drain --stream "$STACK_STREAM"
    "${bench[@]}" write-latency
  fi
done
export GEOLEDGER_CMD_INSTANCES=2 GEOLEDGER_QUERY_INSTANCES=2
"$SCRIPTS_DIR/services.sh" start all
