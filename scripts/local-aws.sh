#!/usr/bin/env bash
# Local AWS stand-ins for demos and end-to-end tests: MinIO (a real S3 server
# with a real STS AssumeRole that enforces session policies), built from the
# Go module proxy at a pinned version into a cache directory (only when absent).
#
#   scripts/local-aws.sh build            build minio and mc if absent (~2-4 min the first time)
#   scripts/local-aws.sh start DIR        start MinIO with data under DIR, create the customer stand-in
#   scripts/local-aws.sh env DIR          print the environment stevedore needs (eval it)
#   scripts/local-aws.sh stop DIR         stop what start started, by PID
#
# What stands in for what: the MinIO user "stevedore-worker" is stevedore's own
# identity (the default credential chain); its policy "customer-role" is what
# the customer's role would grant (read demo-docs and other-bucket). Every
# AssumeRole carries a session policy scoped to the job's bucket, which MinIO
# enforces. MinIO ignores RoleArn and ExternalId, so the trust-policy checks
# are tested against an STS fake instead (see worker/creds).
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MC_VERSION=v0.0.0-20250313080218-cf909e1063a9
CACHE="${STEVEDORE_CACHE:-${HOME:-/tmp}/.cache/stevedore}"
MINIO_BIN="$CACHE/bin/minio-$MINIO_VERSION/minio"
MC_BIN="$CACHE/bin/mc-$MC_VERSION/mc"
PORT="${STEVEDORE_MINIO_PORT:-9000}"
ROOT_USER=stevedore-root
ROOT_PASS=stevedore-root-secret
WORKER_USER=stevedore-worker
WORKER_PASS=stevedore-worker-secret
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

build() {
  # One build at a time: .ci/run starts one in the background while the unit
  # tier runs, and the e2e tier's own call then waits for it here.
  # The lock is held by a subshell only: a MinIO started afterwards must not
  # inherit it (it would hold it for as long as it runs).
  mkdir -p "$CACHE"
  (
    if command -v flock >/dev/null; then
      flock 9
    fi
    if [ ! -x "$MINIO_BIN" ]; then
      echo "building minio $MINIO_VERSION (first time only, a few minutes)..." >&2
      GOBIN="$(dirname "$MINIO_BIN")" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
    fi
    if [ ! -x "$MC_BIN" ]; then
      echo "building mc $MC_VERSION (first time only)..." >&2
      GOBIN="$(dirname "$MC_BIN")" GOFLAGS=-buildvcs=false go install "github.com/minio/mc@$MC_VERSION"
    fi
  ) 9>"$CACHE/local-aws.build.lock"
}

mc() { "$MC_BIN" --config-dir "$DIR/mc" --quiet "$@"; }

start() {
  build
  mkdir -p "$DIR/minio" "$DIR/mc"
  if [ -f "$DIR/minio.pid" ] && kill -0 "$(cat "$DIR/minio.pid")" 2>/dev/null; then
    echo "minio already running (pid $(cat "$DIR/minio.pid"))" >&2
  else
    MINIO_ROOT_USER=$ROOT_USER MINIO_ROOT_PASSWORD=$ROOT_PASS MINIO_BROWSER=off \
      "$MINIO_BIN" server "$DIR/minio" --address "127.0.0.1:$PORT" --console-address "127.0.0.1:$((PORT + 1))" \
      >"$DIR/minio.log" 2>&1 &
    echo $! >"$DIR/minio.pid"
  fi
  for _ in $(seq 1 100); do
    if mc alias set local "http://127.0.0.1:$PORT" "$ROOT_USER" "$ROOT_PASS" >/dev/null 2>&1 && mc ready local >/dev/null 2>&1; then
      break
    fi
    sleep 0.2
  done
  mc ready local >/dev/null
  # The customer role's permissions (shared with docker-compose.yml's minio-setup).
  mc admin policy create local customer-role "$ROOT/deploy/compose/customer-role.json" >/dev/null
  mc admin user add local "$WORKER_USER" "$WORKER_PASS" >/dev/null
  mc admin policy attach local customer-role --user "$WORKER_USER" >/dev/null 2>&1 || true
  mc mb --ignore-existing local/demo-docs >/dev/null
  mc mb --ignore-existing local/other-bucket >/dev/null
  mc mirror --overwrite "$ROOT/scripts/testdata/corpus" local/demo-docs >/dev/null
  echo "not for the demo job" | mc pipe local/other-bucket/secret.txt >/dev/null
  echo "minio ready on 127.0.0.1:$PORT (pid $(cat "$DIR/minio.pid")); buckets demo-docs, other-bucket" >&2
}

env_() {
  cat <<ENV
export AWS_ACCESS_KEY_ID=$WORKER_USER
export AWS_SECRET_ACCESS_KEY=$WORKER_PASS
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PORT
export AWS_ENDPOINT_URL_STS=http://127.0.0.1:$PORT
export AWS_EC2_METADATA_DISABLED=true
export STEVEDORE_S3_PATH_STYLE=true
# MinIO's STS ignores ExternalId and returns no assumed-role ARN: verification
# may accept that only under this development override (never in production).
export STEVEDORE_DEV_EMULATOR_STS=true
export STEVEDORE_PRINCIPAL_ARN=arn:aws:iam::000000000000:role/stevedore-dev
ENV
}

stop() {
  if [ -f "$DIR/minio.pid" ]; then
    pid="$(cat "$DIR/minio.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$DIR/minio.pid"
  fi
}

cmd="${1:-}"
DIR="${2:-$ROOT/.stevedore/local-aws}"
case "$cmd" in
  build) build ;;
  start) start ;;
  env) env_ ;;
  stop) stop ;;
  *) echo "usage: $0 build|start|env|stop [DIR]" >&2; exit 2 ;;
esac
