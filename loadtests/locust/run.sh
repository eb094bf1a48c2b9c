#!/usr/bin/env bash
# Runs one kind of Locust user against the local stack (`make up`) under the step ramp,
# headless and bounded in time, then plots the result and prints the saturation point.
#
#   loadtests/locust/run.sh [GuideUser|ReadHeavyUser|WriteHeavyUser|SpatialUser]
#
# Writes into .local/loadtests/<time>-<user>-<shape>/: environment.txt (machine, shape,
# versions), Locust's CSV reports (locust_stats.csv, locust_stats_history.csv,
# locust_failures.csv, locust_exceptions.csv) and HTML report (locust.html), its log, the
# plot (locust.png) and the table with the saturation point (saturation.txt).
#
# The ramp and the users are set from the environment (see step_ramp.py and locustfile.py):
# GEOLEDGER_RAMP_CEILING, GEOLEDGER_RAMP_STEP, GEOLEDGER_RAMP_HOLD_SECS, GEOLEDGER_THINK_SECS,
# GEOLEDGER_PLACES. The stack's ports come from the same variables as `make up`'s.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../../infra/local/lib.sh"
use_state_dir "${GEOLEDGER_STACK_STATE_DIR:-$LOCAL_DIR}"
# The writes carry the stack's token when it has one (see infra/local/lib.sh).
GEOLEDGER_API_TOKEN=$(api_token)
export GEOLEDGER_API_TOKEN

user=${1:-GuideUser}
here=$GEOLEDGER_ROOT/loadtests/locust
python=$LOCAL_DIR/venv/bin/python
locust=$LOCAL_DIR/venv/bin/locust
[[ -x $locust ]] || die "Locust is not installed in .local/venv; run infra/local/install.sh"
bench_api=$STACK_BIN_DIR/bench-api
[[ -x $bench_api ]] || die "$bench_api is missing; run: cargo build --release -p loadtests"

api=http://127.0.0.1:$STACK_HAPROXY_PORT
export GEOLEDGER_PLACES=${GEOLEDGER_PLACES:-$(realpath -m -- "$GEOLEDGER_ROOT/../shared/data/places.csv")}
environment=$("$bench_api" describe --base-url "$api" \
  --haproxy-stats "http://127.0.0.1:$STACK_HAPROXY_STATS_PORT/" \
  --nats-monitor "http://127.0.0.1:$STACK_NATS_MONITOR_PORT" \
  --projector-status "http://127.0.0.1:$STACK_PROJECTOR_PORT/status" \
  --database-url "$STACK_DATABASE_URL")
# The shape as HAProxy routes it, which is what was measured, whatever the variables say.
commands=$(sed -n 's/.*command_api x\([0-9]*\).*/\1/p' <<<"$environment")
queries=$(sed -n 's/.*query_api x\([0-9]*\).*/\1/p' <<<"$environment")
out=${GEOLEDGER_LOADTEST_OUT:-$LOCAL_DIR/loadtests}/$(date -u +%Y%m%dT%H%M%SZ)-$user-${commands:-?}cmd+${queries:-?}query
mkdir -p -- "$out"
printf '%s\n' "$environment" | tee "$out/environment.txt"
{
  printf 'load generator: %s, %s, on the same machine\n' \
    "$("$locust" --version 2>/dev/null | head -n 1)" "$("$python" --version)"
  printf 'users: %s, think time %s s; ramp: %s new users/s in steps of %s, each held %s s, up to %s\n' \
    "$user" "${GEOLEDGER_THINK_SECS:-0.5,1.5}" "${GEOLEDGER_RAMP_SPAWN_RATE:-3}" \
    "${GEOLEDGER_RAMP_STEP:-30}" "${GEOLEDGER_RAMP_HOLD_SECS:-15}" "${GEOLEDGER_RAMP_CEILING:-300}"
} | tee -a "$out/environment.txt"

# The ramp ends the run itself. Locust ignores --run-time when a shape drives it, so the
# backstop, a minute past the ramp's planned end, is a SIGINT from timeout(1), on which
# Locust stops and still writes its reports.
ramp_secs=$(cd -- "$here" && "$python" -c 'import step_ramp; print(int(step_ramp.StepRamp().duration()))')
say "running $user for about ${ramp_secs}s; reports in ${out#"$GEOLEDGER_ROOT"/}"
status=0
timeout --signal=INT --kill-after=30 "$((ramp_secs + 60))" \
  "$locust" -f "$here/locustfile.py,$here/step_ramp.py" --headless --host "$api" \
  --csv "$out/locust" --csv-full-history --html "$out/locust.html" \
  --stop-timeout 10 --only-summary \
  "$user" >"$out/locust.log" 2>&1 || status=$?
tail -n 25 -- "$out/locust.log"

"$python" "$here/plot.py" "$out/locust_stats_history.csv" --png "$out/locust.png" \
  --title "$user (think time ${GEOLEDGER_THINK_SECS:-0.5,1.5} s) on ${commands:-?} command-api + ${queries:-?} query-api behind HAProxy
$(sed -n 's/^machine: \([^,]*\),.*/\1/p' <<<"$environment"), everything co-located, $(date -u '+%F %H:%M UTC')" |
  tee "$out/saturation.txt"
# Locust warns when its own process runs out of CPU; past that point the figures measure the
# load generator as much as geoledger.
if grep -q 'CPU usage' -- "$out/locust.log"; then
  say "note: Locust reported its own CPU as saturated during the run (see locust.log)" |&
    tee -a "$out/saturation.txt"
fi
say "reports: $out"
# Locust exits 1 when any request failed; the figures are written either way.
exit "$status"
