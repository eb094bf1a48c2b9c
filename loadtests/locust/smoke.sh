#!/usr/bin/env bash
# The load test's smoke run in `make test`: a small stack (one projector, one command-api,
# one query-api, HAProxy) on the running test servers, then every kind of Locust user
# together for a few seconds. It asserts that nothing failed and that every kind of request
# was sent, never a speed: the machine running the tests may be busy with anything.
#
# Needs the test servers (infra/local/test-services.sh start) and their environment
# (`test-services.sh env`), as `make test` provides. The services are debug builds; the
# stack's state goes under the test state folder and every port is picked free at start, so
# it runs beside `make up`'s stack and other test runs. Stops what it started however it ends.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/../../infra/local/lib.sh"

: "${GEOLEDGER_TEST_DATABASE_URL:?run through make test, or eval "$(infra/local/test-services.sh env)" first}"
here=$GEOLEDGER_ROOT/loadtests/locust
locust=$LOCAL_DIR/venv/bin/locust
[[ -x $locust ]] || die "Locust is not installed in .local/venv; run infra/local/install.sh"

# Ports the kernel hands out as free now; the stack binds them a moment later.
read -r haproxy_port stats_port cmd_port query_port projector_port < <(free_ports 5)

test_pg_port=${GEOLEDGER_TEST_DATABASE_URL##*:}
test_pg_port=${test_pg_port%%/*}
test_nats_port=${GEOLEDGER_TEST_NATS_URL##*:}
export GEOLEDGER_STACK_STATE_DIR=${GEOLEDGER_TEST_STATE_DIR:-$LOCAL_DIR/test}/smoke
export GEOLEDGER_PG_PORT=$test_pg_port GEOLEDGER_NATS_PORT=$test_nats_port
export GEOLEDGER_HAPROXY_PORT=$haproxy_port GEOLEDGER_HAPROXY_STATS_PORT=$stats_port
export GEOLEDGER_CMD_1_PORT=$cmd_port GEOLEDGER_QUERY_1_PORT=$query_port
export GEOLEDGER_PROJECTOR_PORT=$projector_port
export GEOLEDGER_CMD_INSTANCES=1 GEOLEDGER_QUERY_INSTANCES=1
# A stream of its own, so nothing the tests left in the test NATS is projected.
export GEOLEDGER_STREAM=GEOLEDGER_SMOKE GEOLEDGER_SUBJECT_PREFIX=geoledger.smoke
export GEOLEDGER_BIN_DIR=${CARGO_TARGET_DIR:-$GEOLEDGER_ROOT/target}/debug
export RUST_LOG=${RUST_LOG:-warn}
services=$SCRIPTS_DIR/services.sh

cargo build --quiet -p projector -p command-api -p query-api --bins

# The stack connects as the role `geoledger` to the database `geoledger`, which the test
# cluster (wiped at every start) does not have until now.
pg_psql "$test_pg_port" -c 'CREATE ROLE geoledger LOGIN SUPERUSER' 2>/dev/null || true
pg_psql "$test_pg_port" -c 'DROP DATABASE IF EXISTS geoledger WITH (FORCE)'
pg_psql "$test_pg_port" -c 'CREATE DATABASE geoledger OWNER geoledger'

stop_stack() {
  local status=$?
  "$services" stop haproxy || true
  "$services" stop apps || true
  exit "$status"
}
trap stop_stack EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$services" start apps
"$services" start haproxy
# The stack's writes need its token, made by the start above; sending it proves the load
# test's users authenticate.
use_state_dir "$GEOLEDGER_STACK_STATE_DIR"
GEOLEDGER_API_TOKEN=$(api_token)
[[ -n $GEOLEDGER_API_TOKEN || $STACK_AUTH == off ]] || die "the smoke stack made no token"
export GEOLEDGER_API_TOKEN

out=$GEOLEDGER_STACK_STATE_DIR/locust
rm -rf -- "$out"
mkdir -p -- "$out"
say "load-test smoke run: 12 users of every kind for 15 s through 127.0.0.1:$haproxy_port"
status=0
GEOLEDGER_THINK_SECS=0.05,0.2 GEOLEDGER_PLACES=$GEOLEDGER_PLACES \
  "$locust" -f "$here/locustfile.py" --headless --host "http://127.0.0.1:$haproxy_port" \
  --users 12 --spawn-rate 6 --run-time 15s --stop-timeout 5 --only-summary \
  --csv "$out/locust" GuideUser ReadHeavyUser WriteHeavyUser SpatialUser \
  >"$out/locust.log" 2>&1 || status=$?

# Every kind of request must have been sent, and none may have failed. Locust's own exit
# status already says the second; the CSV says both, and names the request that failed.
python3 - "$out/locust_stats.csv" "$out/locust_failures.csv" <<'PY' || status=1
import csv, sys
stats = {row["Name"]: row for row in csv.DictReader(open(sys.argv[1], encoding="utf-8"))}
problems = []
for name in ("GET /points", "POST /point", "GET /points?bbox", "GET /points?near"):
    if int(stats.get(name, {}).get("Request Count", 0)) == 0:
        problems.append(f"no {name} was sent")
total = stats.get("Aggregated", {})
if int(total.get("Failure Count", 1)) != 0:
    problems.append(f"{total.get('Failure Count')} requests failed")
    for row in csv.DictReader(open(sys.argv[2], encoding="utf-8")):
        problems.append(f"  {row['Occurrences']} x {row['Method']} {row['Name']}: {row['Error']}")
print(f"smoke: {total.get('Request Count', 0)} requests, {total.get('Failure Count', '?')} failed")
if problems:
    print("smoke: FAILED\n" + "\n".join(problems), file=sys.stderr)
    sys.exit(1)
PY
if ((status != 0)); then
  tail -n 30 -- "$out/locust.log" >&2
  die "the load-test smoke run failed; Locust's reports are in $out"
fi
say "load-test smoke run passed"
