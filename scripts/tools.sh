#!/usr/bin/env bash
# Tools the test suite runs that are not Go packages of ours: promtool (rule
# checks and rule unit tests), prometheus (the e2e tier scrapes stevedore
# dev with it) and Redocly CLI (the OpenAPI linter, from the npm registry with
# the machine's Node.js), put in the cache only when absent.
#
# Where Debian's apt is available (CI and this machine image), they come from
# Debian's prometheus package, unpacked into the cache with dpkg-deb (not
# installed: no service is started) — seconds instead of minutes of building.
# Elsewhere they are built from the Go module proxy at a pinned version.
#
#   scripts/tools.sh build        fetch or build promtool and prometheus
#   scripts/tools.sh promtool     print promtool's path
#   scripts/tools.sh prometheus   print prometheus's path
#   scripts/tools.sh redocly      print Redocly CLI's path
#   scripts/tools.sh ocr          install Debian's Tesseract and its language data (root)
set -euo pipefail

OCR_PACKAGES="tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu tesseract-ocr-fra tesseract-ocr-spa tesseract-ocr-osd"
PROMETHEUS_VERSION=v0.316.0 # Prometheus 3.x's Go module version, for machines without apt
CACHE="${STEVEDORE_CACHE:-${HOME:-/tmp}/.cache/stevedore}"
if command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  FROM=debian
  DIR="$CACHE/bin/prometheus-debian"
else
  FROM=source
  DIR="$CACHE/bin/prometheus-$PROMETHEUS_VERSION"
fi
PROMTOOL="$DIR/promtool"
PROMETHEUS="$DIR/prometheus"
REDOCLY_VERSION=2.77.0 # @redocly/cli, one package with its dependencies bundled
REDOCLY="$CACHE/npm/redocly-$REDOCLY_VERSION/node_modules/.bin/redocly"

from_debian() {
  echo "fetching Debian's prometheus package (promtool and prometheus)..." >&2
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  if ! (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1); then
    # The package lists may be missing on a fresh machine: refresh them (needs root) and retry.
    apt-get update -qq >/dev/null
    (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
  mkdir -p "$DIR"
  cp "$tmp/x/usr/bin/promtool" "$tmp/x/usr/bin/prometheus" "$DIR/"
  "$PROMTOOL" --version | head -1 >&2
}

from_source() {
  echo "building promtool and prometheus $PROMETHEUS_VERSION (first time only, several minutes)..." >&2
  # No service-discovery plugins and no web UI assets: the tests use static targets and the API.
  GOBIN="$DIR" GOFLAGS="-buildvcs=false -mod=mod" go install -tags remove_all_sd \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
}

case "${1:-}" in
  build)
    if [ ! -x "$PROMTOOL" ] || [ ! -x "$PROMETHEUS" ]; then
      "from_$FROM"
    fi
    if [ ! -x "$REDOCLY" ]; then
      if ! command -v npm >/dev/null; then
        echo "npm not found: the OpenAPI lint test needs Node.js 20+ with npm (Debian: apt-get install nodejs npm)" >&2
        exit 1
      fi
      echo "installing @redocly/cli@$REDOCLY_VERSION from the npm registry..." >&2
      npm install --silent --no-audit --no-fund --prefix "$CACHE/npm/redocly-$REDOCLY_VERSION" "@redocly/cli@$REDOCLY_VERSION" >&2
    fi
    ;;
  redocly)
    echo "$REDOCLY"
    ;;
  prometheus)
    echo "$PROMETHEUS"
    ;;
  ocr)
    echo "installing Debian's tesseract-ocr (eng, deu, fra, spa, osd)..." >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $OCR_PACKAGES >/dev/null
    tesseract --version 2>&1 | head -1 >&2
    ;;
  promtool)
    echo "$PROMTOOL"
    ;;
  *)
    echo "usage: $0 build|promtool|prometheus|redocly|ocr" >&2
    exit 2
    ;;
esac
