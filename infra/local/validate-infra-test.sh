#!/usr/bin/env bash
# Proves that each check of validate-infra.sh can fail: every check first passes on a fresh
# copy of the deployment files, then must fail on a copy broken in one place. A check that
# passes a broken copy fails this test. Run by `make test` after validate-infra.sh.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

VALIDATE=$SCRIPTS_DIR/validate-infra.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/geoledger-validate-test.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
failures=0
cases=0

# A fresh copy of infra/ under $WORK/<case>/infra, links kept, so that the relative paths the
# files use between themselves (the chart's link to infra/haproxy, compose's build context)
# still hold.
fresh_copy() {
  local dir=$WORK/$1
  mkdir -p -- "$dir"
  cp -a -- "$GEOLEDGER_ROOT/infra" "$dir/infra"
  printf '%s\n' "$dir/infra"
}

# Replaces the one occurrence of OLD in FILE by NEW; a missing or repeated OLD is a broken
# test case, not a pass.
replace() {
  "$LOCAL_DIR/venv/bin/python" - "$@" <<'EOF'
import sys
path, old, new = sys.argv[1:4]
text = open(path, encoding="utf-8").read()
if text.count(old) != 1:
    sys.exit(f"{path}: expected exactly one {old!r}, found {text.count(old)}")
open(path, "w", encoding="utf-8").write(text.replace(old, new))
EOF
}

# CASE: what is broken; PATTERN: an extended regular expression the check's failure output
# must match, so that it failed for that reason and not another; CHECK ARGS: the
# validate-infra.sh check and its arguments; after `--`, the replace() arguments (file, old,
# new), applied after the check passed once.
expect_caught() {
  local case=$1 pattern=$2 check=$3
  shift 3
  local args=() file old new
  while [[ $1 != -- ]]; do
    args+=("$1")
    shift
  done
  shift
  file=$1 old=$2 new=$3
  cases=$((cases + 1))
  if ! "$VALIDATE" "$check" "${args[@]}" >"$WORK/log" 2>&1; then
    say "FAILED: $check fails on the unbroken copy, so '$case' proves nothing"
    sed 's/^/    /' -- "$WORK/log" >&2
    failures=$((failures + 1))
    return 0
  fi
  replace "$file" "$old" "$new"
  if "$VALIDATE" "$check" "${args[@]}" >"$WORK/log" 2>&1; then
    say "FAILED: $check passed although $case"
    failures=$((failures + 1))
  elif ! grep -Eq -- "$pattern" "$WORK/log"; then
    say "FAILED: $check failed when $case, but its output does not match /$pattern/:"
    sed 's/^/    /' -- "$WORK/log" >&2
    failures=$((failures + 1))
  else
    say "ok: $check catches that $case"
  fi
}

# HAProxy: a misspelt balance algorithm, and a conditional block left open.
infra=$(fresh_copy haproxy-keyword)
expect_caught "a backend names an unknown balance algorithm" "balance only supports" haproxy "$infra/haproxy/haproxy.cfg" -- \
  "$infra/haproxy/haproxy.cfg" $'backend query_api\n    balance leastconn' $'backend query_api\n    balance fewestconn'
infra=$(fresh_copy haproxy-if)
expect_caught "a .if block is never closed" "endif|unterminated|\\.if" haproxy "$infra/haproxy/haproxy.cfg" -- \
  "$infra/haproxy/haproxy.cfg" $'    server query-api-3 "${GEOLEDGER_QUERY_3}"\n    .endif' \
  $'    server query-api-3 "${GEOLEDGER_QUERY_3}"'

# Compose: a volume nobody declared (only Compose itself knows), a key the specification does
# not have, and a key written twice (which YAML loaders silently merge).
infra=$(fresh_copy compose-volume)
expect_caught "a service mounts an undeclared volume" "undefined volume pgdta" compose-config \
  "$infra/compose/compose.yaml" "$infra/compose/example.env" -- \
  "$infra/compose/compose.yaml" "pgdata:/var/lib/postgresql/data" "pgdta:/var/lib/postgresql/data"
infra=$(fresh_copy compose-schema)
expect_caught "a service has a key the specification lacks" "'replicas' was unexpected" compose-schema "$infra/compose/compose.yaml" -- \
  "$infra/compose/compose.yaml" "    image: nats:2.14.6-alpine" $'    image: nats:2.14.6-alpine\n    replicas: 2'
infra=$(fresh_copy compose-duplicate)
expect_caught "a service sets its image twice" "duplication of key \"image\"" yaml "$infra/compose/compose.yaml" -- \
  "$infra/compose/compose.yaml" "    image: nats:2.14.6-alpine" $'    image: nats:2.14.6-alpine\n    image: nats:latest'

# The chart: a Chart.yaml without a version, a value values.schema.json forbids, a manifest
# the Kubernetes schemas refuse, an API version this Kubernetes lacks, a key written twice in
# a rendered manifest.
infra=$(fresh_copy chart-version)
expect_caught "Chart.yaml has no version" "version is required" chart-lint "$infra/helm/geoledger" -- \
  "$infra/helm/geoledger/Chart.yaml" $'version: 0.1.0\n' ''
infra=$(fresh_copy chart-values)
expect_caught "values.yaml asks for zero command-api pods" "commandApi.replicas: Must be greater than or equal to 1" chart-lint "$infra/helm/geoledger" -- \
  "$infra/helm/geoledger/values.yaml" $'commandApi:\n  # Pods when the autoscaler is off; with it on, the autoscaler owns the count.\n  replicas: 2' \
  $'commandApi:\n  replicas: 0'
infra=$(fresh_copy chart-field)
expect_caught "the projector Deployment has a misspelt field" "Deployment/geoledger-projector: spec: .*'replica'" chart-render "$infra/helm/geoledger" -- \
  "$infra/helm/geoledger/templates/projector.yaml" "  replicas: 1" "  replica: 1"
infra=$(fresh_copy chart-api-version)
expect_caught "the Ingress uses an API version Kubernetes removed" "Ingress/geoledger: Kubernetes [0-9.]+ has no networking.k8s.io/v1beta1 Ingress" chart-render "$infra/helm/geoledger" -- \
  "$infra/helm/geoledger/templates/ingress.yaml" "apiVersion: networking.k8s.io/v1" "apiVersion: networking.k8s.io/v1beta1"
infra=$(fresh_copy chart-duplicate)
expect_caught "a rendered manifest sets a key twice" "duplication of key \"revisionHistoryLimit\"" chart-render "$infra/helm/geoledger" -- \
  "$infra/helm/geoledger/templates/projector.yaml" "  revisionHistoryLimit: 5" \
  $'  revisionHistoryLimit: 5\n  revisionHistoryLimit: 10'

# The Dockerfile: an install hadolint warns about, and an image of a binary the workspace
# does not have.
infra=$(fresh_copy dockerfile-lint)
expect_caught "an image installs packages without pinning or cleaning up" "DL3008|DL3009|DL3014|DL3015" hadolint "$infra/docker/Dockerfile" -- \
  "$infra/docker/Dockerfile" "WORKDIR /src" $'RUN apt-get update && apt-get install curl\nWORKDIR /src'
infra=$(fresh_copy dockerfile-bins)
expect_caught "an image runs a binary the workspace lacks" "runs .read-api., which is not a binary of the workspace" dockerfile-bins "$infra/docker/Dockerfile" -- \
  "$infra/docker/Dockerfile" 'ENTRYPOINT ["/usr/local/bin/query-api"]' 'ENTRYPOINT ["/usr/local/bin/read-api"]'

((failures == 0)) || die "$failures of $cases broken copies were not caught"
say "validate-infra: all $cases broken copies caught"
