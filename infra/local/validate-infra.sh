#!/usr/bin/env bash
# Validates the deployment files offline, with the real parsers install.sh puts in .local:
# no container engine and no cluster needed. `make test` runs it with no argument (every
# check on the repository's files); each check can also be run alone on any file, which is
# how validate-infra-test.sh feeds it broken copies:
#
#   validate-infra.sh [all]
#   validate-infra.sh haproxy CFG                   local variant and DNS-discovery variant
#   validate-infra.sh compose-config COMPOSE ENV    the Compose v2 binary's `config -q`
#   validate-infra.sh compose-schema COMPOSE        the compose specification's JSON schema
#   validate-infra.sh yaml FILE...                  yamllint: duplicate keys, syntax
#   validate-infra.sh chart-lint CHART              helm lint --strict (values.schema.json too)
#   validate-infra.sh chart-render CHART [VALUES]   helm template, then yamllint and the
#                                                   Kubernetes schemas on every manifest
#   validate-infra.sh hadolint DOCKERFILE
#   validate-infra.sh dockerfile-bins DOCKERFILE    the images build the workspace's binaries
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

VENV=$LOCAL_DIR/venv
PYTHON=$VENV/bin/python
HELPER=$SCRIPTS_DIR/validate_infra.py
# Duplicate keys and broken syntax are errors; style is not checked.
YAMLLINT_CONFIG='{rules: {key-duplicates: enable}}'

WORK=$(mktemp -d "${TMPDIR:-/tmp}/geoledger-validate.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT

require_tools() {
  local tool
  for tool in "$COMPOSE_BIN" "$HELM_BIN" "$VENV/bin/hadolint" "$VENV/bin/yamllint" \
    "$VENV/bin/check-jsonschema" "$HAPROXY_BIN"; do
    [[ -x $tool ]] || die "$tool is missing; run infra/local/install.sh"
  done
}

# Runs a command quietly and shows its output only when it fails, under the check's name.
run_check() {
  local name=$1 log
  shift
  log=$WORK/check.log
  if "$@" >"$log" 2>&1; then
    say "ok: $name"
    return 0
  fi
  say "FAILED: $name"
  sed 's/^/    /' -- "$log" >&2
  return 1
}

# HAProxy with no GEOLEDGER_* variable but those given, as the local stack starts it. The
# service names are not resolved at startup (init-addr none): they exist only inside Compose
# or the cluster, and the check must not send queries to the machine's DNS server.
haproxy_check_with() {
  local cfg=$1
  shift
  env -i PATH="$PATH" "$@" GEOLEDGER_HAPROXY_INIT_ADDR=none "$HAPROXY_BIN" -c -f "$cfg"
}

check_haproxy() {
  local cfg=$1
  run_check "haproxy -c $cfg (local servers)" haproxy_check_with "$cfg"
  run_check "haproxy -c $cfg (servers found through DNS)" haproxy_check_with "$cfg" \
    GEOLEDGER_CMD_SERVICE=command-api:8081 GEOLEDGER_QUERY_SERVICE=query-api:8091 \
    GEOLEDGER_HAPROXY_BIND=:8080 GEOLEDGER_HAPROXY_STATS_BIND=:8404
}

compose() { "$COMPOSE_BIN" -f "$1" --env-file "$2" "${@:3}"; }

check_compose_config() {
  run_check "compose config -q $1" compose "$1" "$2" config -q
}

check_compose_schema() {
  run_check "compose specification schema: $1" \
    "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$1"
}

check_yaml() {
  run_check "yamllint $*" "$VENV/bin/yamllint" -d "$YAMLLINT_CONFIG" "$@"
}

# Helm reports the links into infra/haproxy on stderr at every load; only failures matter.
helm_quiet() { "$HELM_BIN" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

check_chart_lint() {
  run_check "helm lint --strict $1" helm_quiet lint --strict "$1"
}

render_chart() {
  local chart=$1 values=$2 out=$3
  local args=(template geoledger "$chart" --namespace geoledger --kube-version "$KUBERNETES_VERSION")
  [[ -z $values ]] || args+=(--values "$values")
  helm_quiet "${args[@]}" >"$out"
}

check_chart_render() {
  local chart=$1 values=${2:-} out
  out=$WORK/rendered-$(basename -- "${values:-default}").yaml
  run_check "helm template $chart ${values:+with $values}" render_chart "$chart" "$values" "$out" || return 1
  check_yaml "$out" || return 1
  run_check "Kubernetes $KUBERNETES_VERSION schemas: $chart ${values:+with $values}" \
    "$PYTHON" "$HELPER" manifests "$out" "$KUBERNETES_VERSION"
}

check_hadolint() {
  run_check "hadolint $1" "$VENV/bin/hadolint" "$1"
}

dockerfile_bins() {
  cargo metadata --no-deps --format-version 1 --offline --quiet |
    "$PYTHON" "$HELPER" dockerfile-bins "$1"
}

check_dockerfile_bins() {
  run_check "images build workspace binaries: $1" dockerfile_bins "$1"
}

# HAProxy exactly as Compose and the chart start it: the environment Compose resolves for the
# haproxy service, and the files and environment the chart's HAProxy pod gets.
check_deployed_haproxy() {
  local compose_file=$1 env_file=$2 chart=$3 dir=$WORK/haproxy-chart vars=()
  compose "$compose_file" "$env_file" config --format json >"$WORK/compose.json"
  run_check "compose build targets are stages of infra/docker/Dockerfile" \
    "$PYTHON" "$HELPER" compose-targets "$WORK/compose.json" infra/docker/Dockerfile || return 1
  mapfile -t vars < <("$PYTHON" "$HELPER" haproxy-env-compose "$WORK/compose.json")
  ((${#vars[@]} > 0)) || die "the compose file's haproxy service sets no GEOLEDGER_* variable"
  run_check "haproxy -c infra/haproxy/haproxy.cfg (compose environment)" \
    haproxy_check_with infra/haproxy/haproxy.cfg "${vars[@]}" || return 1

  render_chart "$chart" "" "$WORK/chart.yaml"
  mkdir -p -- "$dir"
  mapfile -t vars < <("$PYTHON" "$HELPER" haproxy-env-chart "$WORK/chart.yaml" "$dir")
  ((${#vars[@]} > 0)) || die "the chart's HAProxy container sets no GEOLEDGER_* variable"
  run_check "haproxy -c on the chart's HAProxy files (pod environment)" \
    haproxy_check_with "$dir/haproxy.cfg" "${vars[@]}"
}

# Compose's NATS authorization is made by nats-auth.sh, which the local stack and the tests
# run: the committed copy must be what the script prints now, and nats-server must accept it.
check_nats_auth() {
  local conf=$1 fresh=$WORK/nats-auth.conf
  {
    sed -n '1,/^authorization/{/^authorization/!p}' -- "$conf"
    GEOLEDGER_NATS_PASSWORDS_FROM_ENV=1 "$SCRIPTS_DIR/nats-auth.sh" GEOLEDGER_POINTS geoledger.points
  } >"$fresh"
  run_check "$conf is what nats-auth.sh prints" diff -u -- "$conf" "$fresh"
  run_check "nats-server -t on $conf" env GEOLEDGER_NATS_COMMAND_PASSWORD=a \
    GEOLEDGER_NATS_PROJECTOR_PASSWORD=b GEOLEDGER_NATS_ADMIN_PASSWORD=c \
    "$NATS_SERVER_BIN" -t -c "$conf"
}

check_all() {
  local chart=infra/helm/geoledger compose_file=infra/compose/compose.yaml
  local env_file=infra/compose/example.env values status=0
  check_haproxy infra/haproxy/haproxy.cfg || status=1
  check_compose_config "$compose_file" "$env_file" || status=1
  check_compose_schema "$compose_file" || status=1
  check_nats_auth infra/compose/nats-auth.conf || status=1
  check_yaml "$compose_file" "$chart/Chart.yaml" "$chart/values.yaml" "$chart"/ci/*.yaml \
    infra/helm/prerequisites/*.yaml || status=1
  check_chart_lint "$chart" || status=1
  check_chart_render "$chart" || status=1
  for values in "$chart"/ci/*.yaml; do
    check_chart_render "$chart" "$values" || status=1
  done
  check_deployed_haproxy "$compose_file" "$env_file" "$chart" || status=1
  check_hadolint infra/docker/Dockerfile || status=1
  check_dockerfile_bins infra/docker/Dockerfile || status=1
  ((status == 0)) || die "deployment files: some checks failed (above)"
  say "deployment files: every check passed"
}

require_tools
case ${1:-all} in
  all) check_all ;;
  haproxy) check_haproxy "$2" ;;
  compose-config) check_compose_config "$2" "$3" ;;
  compose-schema) check_compose_schema "$2" ;;
  yaml) check_yaml "${@:2}" ;;
  chart-lint) check_chart_lint "$2" ;;
  chart-render) check_chart_render "$2" "${3:-}" ;;
  hadolint) check_hadolint "$2" ;;
  dockerfile-bins) check_dockerfile_bins "$2" ;;
  *) die "unknown check: $1 (see the head of $0)" ;;
esac
