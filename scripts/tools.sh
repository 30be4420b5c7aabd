#!/usr/bin/env bash
# Tools the test suite runs that are not Go packages of ours, built from the
# Go module proxy at pinned versions into the cache (only when absent), like
# MinIO in scripts/local-aws.sh.
#
#   scripts/tools.sh build        build promtool and prometheus (a few minutes the first time)
#   scripts/tools.sh promtool     print promtool's path
#   scripts/tools.sh prometheus   print prometheus's path (the e2e tier scrapes stevedore dev with it)
set -euo pipefail

PROMETHEUS_VERSION=v0.316.0 # Prometheus 3.x's Go module version
CACHE="${STEVEDORE_CACHE:-${HOME:-/tmp}/.cache/stevedore}"
PROMTOOL="$CACHE/bin/promtool-$PROMETHEUS_VERSION/promtool"
PROMETHEUS="$CACHE/bin/prometheus-$PROMETHEUS_VERSION/prometheus"

case "${1:-}" in
  build)
    if [ ! -x "$PROMTOOL" ]; then
      echo "building promtool $PROMETHEUS_VERSION (first time only, several minutes)..." >&2
      GOBIN="$(dirname "$PROMTOOL")" GOFLAGS="-buildvcs=false -mod=mod" go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" # no service-discovery plugins: promtool only checks and tests rules here
    fi
    if [ ! -x "$PROMETHEUS" ]; then
      echo "building prometheus $PROMETHEUS_VERSION (first time only, a few minutes)..." >&2
      # Static scrape targets only, and no web UI assets: the e2e tier uses its API.
      GOBIN="$(dirname "$PROMETHEUS")" GOFLAGS="-buildvcs=false -mod=mod" go install -tags remove_all_sd "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
    fi
    ;;
  prometheus)
    echo "$PROMETHEUS"
    ;;
  promtool)
    echo "$PROMTOOL"
    ;;
  *)
    echo "usage: $0 build|promtool|prometheus" >&2
    exit 2
    ;;
esac
