# stella — a small menu. Everything runs offline once Go modules are downloaded.
GO       ?= go
BIN      ?= bin/stella
FUZZTIME ?= 15s
BENCHTIME ?= 3x

.PHONY: build tools test lint fuzz bench demo docs check clean help

build: ## build bin/stella
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/stella

tools: ## build the registries (distribution, olareg), oras, crane and cosign the tests use (tools/go.mod), once per machine
	$(GO) run ./internal/regtest/cmd/buildtools

test: tools ## run every test (unit, CLI scripts, real registries) with the race detector
	$(GO) test -race -count=1 -timeout 30m ./...

lint: ## gofmt, go vet, go mod tidy -diff, and the dependency, error-table and generated-docs checks
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) test -count=1 -run 'TestGeneratedDocsUpToDate|TestEveryDomainError|TestOfflinePackagesStayOffline' ./cmd/stella

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

bench: tools ## benchmarks, each figure beside its baseline or target as a ratio (docs/benchmarks.md)
	STELLA_BENCH_BYTES=$${STELLA_BENCH_BYTES:-1073741824} STELLA_BENCH_MIRROR_MIB=$${STELLA_BENCH_MIRROR_MIB:-1024} \
	  $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) -timeout 60m ./... | tee bench.out | grep -E '^(Benchmark|ok|FAIL|---|    bench)'
	@echo; echo "see docs/benchmarks.md for what each ratio is compared with and its target"

demo: build ## the main job on embedded defaults: author, build and sign, carry split media to a sealed home, refuse a corrupt transfer, approve offline, run
	./scripts/demo.sh $(BIN)

docs: ## regenerate docs/errors.md, docs/cli/stella.md and the package table of docs/architecture.md
	$(GO) run ./cmd/stella gen-docs docs

check: lint test ## everything CI checks

clean:
	rm -rf bin bench.out

help: ## list these targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## /  \1\t/' | expand -t 10
