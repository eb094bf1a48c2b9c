#!/usr/bin/env bash
# Prints a nats-server configuration block with one user per geoledger service and the
# smallest permissions each needs, for the stream and subject prefix given:
#
#   nats-auth.sh STREAM SUBJECT_PREFIX [CONSUMER] > auth.conf
#
# The passwords come from GEOLEDGER_NATS_COMMAND_PASSWORD, GEOLEDGER_NATS_PROJECTOR_PASSWORD
# and GEOLEDGER_NATS_ADMIN_PASSWORD. With GEOLEDGER_NATS_PASSWORDS_FROM_ENV=1 the file names
# those variables instead, for nats-server to read from its own environment when it starts:
# that is how infra/compose/nats-auth.conf was made. The local stack (services.sh) and the
# NATS auth tests (e2e/tests/api/nats_auth.rs) both run it, so what the tests prove is what
# the stack runs.
#
# - command-api publishes events to <prefix>.* and nothing else of the stream; it declares
#   the stream and its idempotency bucket (KV), reads a point's events by direct get, and
#   claims keys in the bucket. No consumer API, so it cannot read the stream by subscribing.
# - the projector declares the stream and the dead-letter stream, binds and pulls its durable
#   consumer, acknowledges, and publishes dead letters; it cannot publish events.
# - admin may do anything: the operator commands (rebuild, replay, dead-letters, redrive),
#   the load tests and `nats` CLI use.
#
# Both services declare the stream when they start (whichever starts first creates it), so
# both may create and update it: with deny_delete and deny_purge set, neither can remove an
# event, but either could change the stream's limits. A one-shot setup step declaring the
# streams as admin would let both drop that right; it does not exist yet.
set -euo pipefail

stream=${1:?usage: nats-auth.sh STREAM SUBJECT_PREFIX [CONSUMER]}
prefix=${2:?usage: nats-auth.sh STREAM SUBJECT_PREFIX [CONSUMER]}
consumer=${3:-points-projector}
# A password as the configuration holds it: quoted, or an unquoted reference to the server's
# environment (nats-server expands only a whole, unquoted $NAME).
password() {
  if [[ ${GEOLEDGER_NATS_PASSWORDS_FROM_ENV:-} == 1 ]]; then
    printf '$%s' "$1"
  else
    [[ -n ${!1:-} ]] || { printf 'nats-auth.sh: %s is not set\n' "$1" >&2; exit 2; }
    [[ ${!1} != *[\"\\]* ]] || { printf 'nats-auth.sh: %s holds a quote or backslash\n' "$1" >&2; exit 2; }
    printf '"%s"' "${!1}"
  fi
}
command_password=$(password GEOLEDGER_NATS_COMMAND_PASSWORD)
projector_password=$(password GEOLEDGER_NATS_PROJECTOR_PASSWORD)
admin_password=$(password GEOLEDGER_NATS_ADMIN_PASSWORD)

# Names are NATS tokens (letters, digits, _ and -); anything else would need quoting rules the
# permissions below do not follow.
for name in "$stream" "$consumer"; do
  [[ $name =~ ^[A-Za-z0-9_-]+$ ]] || { printf 'nats-auth.sh: bad name %s\n' "$name" >&2; exit 2; }
done
[[ $prefix =~ ^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$ ]] || {
  printf 'nats-auth.sh: bad subject prefix %s\n' "$prefix" >&2
  exit 2
}

dlq=${stream}_DLQ
bucket=${stream}_IDEMPOTENCY
api='$JS.API'

# A quoted, comma-separated list of subjects.
list() {
  local first=1 subject
  for subject in "$@"; do
    ((first)) || printf ', '
    first=0
    printf '"%s"' "$subject"
  done
}

# Declaring a stream: create_or_update_stream asks for its info, then creates or updates it.
declare_stream() { printf '%s\n' "$api.STREAM.INFO.$1" "$api.STREAM.CREATE.$1" "$api.STREAM.UPDATE.$1"; }

mapfile -t command_pub < <(
  printf '%s\n' "$prefix.*" "$api.INFO"
  declare_stream "$stream"
  printf '%s\n' "$api.DIRECT.GET.$stream" "$api.DIRECT.GET.$stream.>" "$api.STREAM.MSG.GET.$stream"
  declare_stream "KV_$bucket"
  printf '%s\n' "\$KV.$bucket.>" "$api.DIRECT.GET.KV_$bucket.>" "$api.STREAM.MSG.GET.KV_$bucket"
)
mapfile -t projector_pub < <(
  printf '%s\n' "$api.INFO"
  declare_stream "$stream"
  printf '%s\n' "$api.CONSUMER.INFO.$stream.$consumer" "$api.CONSUMER.CREATE.$stream.$consumer" \
    "$api.CONSUMER.CREATE.$stream.$consumer.>" "$api.CONSUMER.DURABLE.CREATE.$stream.$consumer" \
    "$api.CONSUMER.DELETE.$stream.$consumer" "$api.CONSUMER.MSG.NEXT.$stream.$consumer" \
    "\$JS.ACK.$stream.$consumer.>"
  declare_stream "$dlq"
  printf '%s\n' "deadletter.$prefix.*"
)

cat <<CONF
authorization {
  users: [
    {
      user: command-api
      password: $command_password
      permissions: {
        publish: { allow: [$(list "${command_pub[@]}")] }
        subscribe: { allow: ["_INBOX.>"] }
      }
    }
    {
      user: projector
      password: $projector_password
      permissions: {
        publish: { allow: [$(list "${projector_pub[@]}")] }
        subscribe: { allow: ["_INBOX.>"] }
      }
    }
    { user: admin, password: $admin_password }
  ]
}
CONF
