#!/usr/bin/env bash
# Regenerates the tokenizer golden file from the reference implementation
# (npm tiktoken, pinned). Needs node and npm; not part of `make test`, whose
# golden file is committed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${STEVEDORE_CACHE:-$HOME/.cache/stevedore}/tiktoken-ref"
mkdir -p "$cache"
[ -d "$cache/node_modules/tiktoken" ] || npm install --silent --prefix "$cache" tiktoken@1.0.22
cp "$root/scripts/tiktoken-golden.mjs" "$cache/golden.mjs"
for enc in cl100k_base o200k_base; do
	node "$cache/golden.mjs" "$root/worker/token/testdata/${enc%_base}_golden.json" "$root/scripts/testdata/corpus" "$enc"
done
