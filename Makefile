# The two commands the README promises, and a few helpers.
.PHONY: demo test unit e2e bench bench-micro fault-run sim build fuzz golden clean

# Run the main job on the embedded default: MinIO + stevedore dev, one index request, a summary.
demo:
	go run ./scripts/demo

# The whole test suite: unit and in-process integration tests (race detector), then end to end on real processes.
test: unit e2e

# SQS tests run on moto_server; make test requires it (pip install 'moto[server]').
export STEVEDORE_REQUIRE_MOTO ?= 1

unit:
	scripts/tools.sh build
	go test -race -count=1 ./...
	go test -tags faults -race -count=1 ./worker/
	# A smoke of the benchmarks (one iteration each), so they keep working; `make bench` measures.
	go test -run '^$$' -bench . -benchtime 1x ./worker/token/ ./worker/chunk/ ./worker/extract/

e2e:
	scripts/local-aws.sh build
	go test -tags e2e -race -count=1 -v -timeout 40m ./scripts/e2e/
	# A 200-object smoke of `make bench`, so the harness keeps working (no result file).
	go run ./scripts/bench -smoke

build:
	go build -o bin/stevedore ./cmd/stevedore

# Throughput against the same-run ceiling (see README "Speed"); writes bench/results/*.json.
bench:
	go run ./scripts/bench

# The fault run at scale: 100,000 objects while workers are SIGKILLed every 3 s and a NATS node
# restarts (make test runs the same test with 5,000).
fault-run:
	scripts/local-aws.sh build
	STEVEDORE_FAULT_OBJECTS=100000 go test -tags e2e -count=1 -v -timeout 180m -run TestFleetLosesNothingUnderFaults ./scripts/e2e/

# Micro-benchmarks: tokenizer, chunker, extractors.
bench-micro:
	go test -run '^$$' -bench . -benchtime 20x ./worker/token/ ./worker/chunk/ ./worker/extract/

fuzz:
	go test -run '^$$' -fuzz FuzzSplit -fuzztime 30s ./worker/chunk/
	go test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./producer/notify/
	go test -run '^$$' -fuzz FuzzContainer -fuzztime 30s ./worker/extract/
	go test -run '^$$' -fuzz FuzzHTMLText -fuzztime 30s ./worker/extract/
	go test -run '^$$' -fuzz FuzzPDF -fuzztime 30s ./worker/extract/

# Regenerate the tokenizer golden file from npm tiktoken (needs node + npm).
golden:
	scripts/tiktoken-golden.sh

clean:
	rm -rf bin .stevedore
