#!/usr/bin/env bash
# Tools the test suite runs that are not Go packages of ours, built from the
# Go module proxy at pinned versions into the cache (only when absent), like
# MinIO in scripts/local-aws.sh.
#
#   scripts/tools.sh build      build promtool (Prometheus's rule checker; ~5-10 min the first time)
#   scripts/tools.sh promtool   print promtool's path
set -euo pipefail

PROMETHEUS_VERSION=v0.316.0 # Prometheus 3.x's Go module version
CACHE="${STEVEDORE_CACHE:-${HOME:-/tmp}/.cache/stevedore}"
PROMTOOL="$CACHE/bin/promtool-$PROMETHEUS_VERSION/promtool"

case "${1:-}" in
  build)
    if [ ! -x "$PROMTOOL" ]; then
      echo "building promtool $PROMETHEUS_VERSION (first time only, several minutes)..." >&2
      GOBIN="$(dirname "$PROMTOOL")" GOFLAGS="-buildvcs=false -mod=mod" go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" # no service-discovery plugins: promtool only checks and tests rules here
    fi
    ;;
  promtool)
    echo "$PROMTOOL"
    ;;
  *)
    echo "usage: $0 build|promtool" >&2
    exit 2
    ;;
esac
