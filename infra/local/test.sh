#!/usr/bin/env bash
# `make test`: format and lint checks, the deployment files' checks (validate-infra.sh), then
# the whole workspace's tests against freshly started test servers
# (infra/local/test-services.sh), then the load test's smoke run on a small stack over those
# servers (loadtests/locust/smoke.sh, well under a minute once built). The servers are stopped
# again however the run ends. The exit code is that of the first failing step.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The deployment files (images, Compose, Helm chart, HAProxy), offline; then proof that each
# of those checks fails on a broken copy.
"$SCRIPTS_DIR/validate-infra.sh"
"$SCRIPTS_DIR/validate-infra-test.sh"

# The servers start only now: the checks above need none, and fail faster without them.
stop_test_services() {
  local status=$?
  "$SCRIPTS_DIR/test-services.sh" stop || true
  exit "$status"
}
trap stop_test_services EXIT
# An interrupt becomes an ordinary exit, so the EXIT trap runs for it too.
trap 'exit 130' INT
trap 'exit 143' TERM
"$SCRIPTS_DIR/test-services.sh" start
eval "$("$SCRIPTS_DIR/test-services.sh" env)"
say "test servers: $GEOLEDGER_TEST_DATABASE_URL, $GEOLEDGER_TEST_NATS_URL"
for data in "$GEOLEDGER_SAMPLE_PLACES" "$GEOLEDGER_PLACES"; do
  [[ -f $data ]] || say "warning: $data is missing; tests that read it will fail"
done

cargo test --workspace
"$GEOLEDGER_ROOT/loadtests/locust/smoke.sh"
