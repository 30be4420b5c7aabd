# The two commands the README promises, and a few helpers.
.PHONY: demo test unit unit-packages unit-faults unit-smokes e2e bench bench-micro fault-run fairness memory sim sweep-scale ocr-scale build release image fuzz golden clean

# Run the main job on the embedded default: MinIO + stevedore dev, one index request, a summary.
demo:
	go run ./scripts/demo

# The whole test suite: unit and in-process integration tests (race detector), then end to end on real processes.
test: unit e2e

# SQS tests run on moto_server; make test requires it (pip install 'moto[server]').
export STEVEDORE_REQUIRE_MOTO ?= 1
# OCR tests run Tesseract; make test requires it (apt-get install tesseract-ocr; .ci/run installs it).
export STEVEDORE_REQUIRE_OCR ?= 1

# The tests of worker/faults_test.go, by name.
FAULT_TESTS = $(shell grep -o '^func Test[A-Za-z0-9_]*' worker/faults_test.go | sed 's/^func //' | paste -sd'|' -)

# The unit tier: three parts at once, each printed whole when it ends (the race-detector run's long
# last package leaves a core idle, which the other two fill).
unit:
	scripts/tools.sh build
	$(MAKE) --no-print-directory -j3 --output-sync=target unit-packages unit-faults unit-smokes

unit-packages:
	go test -race -count=1 ./...

# The fault tests (worker/faults_test.go, built only with -tags faults); the rest of ./worker runs in unit-packages.
unit-faults:
	go test -tags faults -race -count=1 -run '^($(FAULT_TESTS))$$' ./worker/

unit-smokes:
	# A smoke of the benchmarks (one iteration each), so they keep working; `make bench` measures.
	go test -run '^$$' -bench . -benchtime 1x ./schema/ ./worker/creds/ ./worker/token/ ./worker/chunk/ ./worker/extract/
	# A small smoke of the scale-out simulation; `make sim` measures.
	STEVEDORE_SIM=smoke go test -tags sim -race -count=1 -timeout 20m ./scripts/sim/

e2e:
	scripts/local-aws.sh build
	go test -tags e2e -race -count=1 -v -parallel 4 -timeout 40m ./scripts/e2e/
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

# The scale-out simulation: 500 tenants x 3 jobs on 10 workers (STS calls), 1-8 workers (throughput),
# 1,000 and 5,000 small tenants behind a 100,000-object backlog, B behind 40/400 jobs, wake fan-out,
# planning a 1,000,000-key bucket in lanes behind 50 ms LISTs and the TASKS window.
sim:
	mkdir -p .stevedore
	go test -tags sim -count=1 -v -timeout 120m ./scripts/sim/ > .stevedore/sim.log 2>&1; status=$$?; grep -v '^=== RUN' .stevedore/sim.log; exit $$status

# At 100,000 documents: a sync's sweep (time, memory), a wipe (rate), reading one 1,000-chunk document (make test: 2,000).
sweep-scale:
	mkdir -p .stevedore
	STEVEDORE_SWEEP_OBJECTS=100000 STEVEDORE_SCALE_DOCUMENTS=100000 go test -count=1 -v -timeout 20m -run 'TestSweepAtScale|TestEraseAtScale|TestDocumentReadAtScale' \
		./worker/sweep/ ./schema/collections/ > .stevedore/sweep.log 2>&1; status=$$?; grep -E 'sweep of|wipe of|document of|^(ok|FAIL|---)' .stevedore/sweep.log; exit $$status

# Micro-benchmarks: task encoding and publishing, the listing reader, tokenizer, chunker, extractors.
bench-micro:
	go test -run '^$$' -bench . -benchtime 20x ./schema/ ./worker/creds/ ./worker/token/ ./worker/chunk/ ./worker/extract/

fuzz:
	go test -run '^$$' -fuzz FuzzSplit -fuzztime 30s ./worker/chunk/
	go test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./producer/notify/
	go test -run '^$$' -fuzz FuzzContainer -fuzztime 30s ./worker/extract/
	go test -run '^$$' -fuzz FuzzHTMLText -fuzztime 30s ./worker/extract/
	go test -run '^$$' -fuzz FuzzPDF -fuzztime 30s ./worker/extract/
	go test -run '^$$' -fuzz FuzzListDoc -fuzztime 30s ./worker/creds/
	go test -run '^$$' -fuzz FuzzTaskPage -fuzztime 30s ./schema/

# Regenerate the tokenizer golden file from npm tiktoken (needs node + npm).
golden:
	scripts/tiktoken-golden.sh

clean:
	rm -rf bin .stevedore

# Fairness under a 100,000-object job (make test: 10,000).
fairness:
	scripts/local-aws.sh build
	STEVEDORE_FAIRNESS_OBJECTS=100000 go test -tags e2e -count=1 -v -timeout 60m -run TestFairnessUnderABigJob ./scripts/e2e/

# A worker's peak RSS on a 1 GiB object and with every task slot on a 600-page PDF (make test: 256 MiB, 150 pages).
memory:
	scripts/local-aws.sh build
	STEVEDORE_MEMORY_MIB=1024 STEVEDORE_PDF_PAGES=600 go test -tags e2e -count=1 -v -timeout 60m -run 'TestWorkerMemoryIsBounded|TestWorkerMemoryWithLargePDFs' ./scripts/e2e/

# OCR at scale: every task slot of one worker on a 50-page scanned PDF (make test runs 1 page):
# pages per second per core, the worker's peak RSS and its Tesseract processes'.
ocr-scale:
	scripts/local-aws.sh build
	STEVEDORE_SCAN_PAGES=50 go test -tags e2e -count=1 -v -timeout 90m -run TestWorkerMemoryWithScans ./scripts/e2e/

# A release: static binaries for linux/amd64 and linux/arm64 in dist/, stamped with the version (the
# git tag, else the commit), the commit and the commit's time, built reproducibly (-trimpath, no VCS
# stamping, the commit time rather than the build time: the same commit gives the same bytes), with
# their SHA-256 sums. The image: docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION)
# --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) -t <registry>/stevedore:$(VERSION) .
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell git log -1 --format=%cI 2>/dev/null)
LDFLAGS  = -s -w -X main.buildVersion=$(VERSION) -X main.buildCommit=$(COMMIT) -X main.buildDate=$(DATE)
# The image (needs a Docker engine): built with the release's stamp, pushed to $(REGISTRY), and its
# digest printed with the command that pins the overlays to it.
REGISTRY ?= ghcr.io/stevedore-dev
image:
	docker build -f deploy/Dockerfile --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) --build-arg DATE=$(DATE) \
		-t $(REGISTRY)/stevedore:$(VERSION) .
	docker push $(REGISTRY)/stevedore:$(VERSION)
	@digest=$$(docker inspect --format '{{index .RepoDigests 0}}' $(REGISTRY)/stevedore:$(VERSION)); echo "$$digest"; \
		echo "pin it: (cd deploy/kubernetes/overlays/prod && kustomize edit set image stevedore=$$digest)"

release:
	rm -rf dist && mkdir -p dist
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch go build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)" \
			-o dist/stevedore-$(VERSION)-linux-$$arch ./cmd/stevedore || exit 1; \
	done
	cd dist && sha256sum stevedore-* > SHA256SUMS && cat SHA256SUMS
