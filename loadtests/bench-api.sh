#!/usr/bin/env bash
# The high-rate benchmarks against the local stack (`make up`), through HAProxy: throughput
# of the first page, the bbox, POST /point and the 80/20 mix at a fixed concurrency; the
# end-to-end write latency at a fixed rate; and, with --drain, how fast the projector works
# through a backlog. Prints the machine, the shape and the versions before each part.
#
#   loadtests/bench-api.sh [--drain]
#
# Settings from the environment: BENCH_CONNECTIONS (256), BENCH_SECS (10 per throughput
# scenario), BENCH_WRITE_RATE (2000), BENCH_WRITE_SECS (20), BENCH_DRAIN_SECS (15 of writes
# while the projector is stopped). The stack's ports come from the same variables as
# `make up`'s.
#
# --drain stops the stack's projector, writes for BENCH_DRAIN_SECS, starts it again and
# times its catch-up; readers see the read model stand still meanwhile.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../infra/local/lib.sh"
use_state_dir "${GEOLEDGER_STACK_STATE_DIR:-$LOCAL_DIR}"

drain=false
case ${1:-} in
  --drain) drain=true ;;
  '') ;;
  *)
    printf 'usage: %s [--drain]\n' "$0" >&2
    exit 2
    ;;
esac

# The writes carry the stack's token when it has one (see infra/local/lib.sh).
GEOLEDGER_API_TOKEN=$(api_token)
export GEOLEDGER_API_TOKEN

if [[ -z ${GEOLEDGER_BIN_DIR:-} ]]; then
  cargo build --release -p loadtests --bin bench-api
fi
bench=("$STACK_BIN_DIR/bench-api"
  --base-url "http://127.0.0.1:$STACK_HAPROXY_PORT"
  --haproxy-stats "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/"
  --nats-monitor "http://127.0.0.1:$STACK_NATS_MONITOR_PORT"
  --projector-status "http://127.0.0.1:$STACK_PROJECTOR_PORT/status"
  --database-url "$STACK_DATABASE_URL"
  --places "${GEOLEDGER_PLACES:-$(realpath -m -- "$GEOLEDGER_ROOT/../shared/data/places.csv")}")

"${bench[@]}" throughput --connections "${BENCH_CONNECTIONS:-256}" \
  --duration-secs "${BENCH_SECS:-10}"
printf '\n'
"${bench[@]}" write-latency --rate "${BENCH_WRITE_RATE:-2000}" \
  --duration-secs "${BENCH_WRITE_SECS:-20}"

if $drain; then
  printf '\n'
  say "stopping the projector to build a backlog"
  stop_process projector /projector 30
  "${bench[@]}" throughput --scenario post --connections "${BENCH_CONNECTIONS:-256}" \
    --duration-secs "${BENCH_DRAIN_SECS:-15}" --warmup-secs 0
  "$SCRIPTS_DIR/services.sh" start apps
  "${bench[@]}" projector-drain --stream "$STACK_STREAM"
fi
