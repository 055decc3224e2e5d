# ephemera — `make help` lists the targets.

SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/ephemera
PKGS    := ./...
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build bin/ephemera with the version stamped in.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ephemera

.PHONY: deb
deb: ## Build bin/ephemera_<version>_<arch>.deb with dpkg-deb (packaging/).
	$(GO) build -trimpath -buildmode=pie -ldflags '$(LDFLAGS)' -o bin/deb/ephemera ./cmd/ephemera
	bash packaging/build-deb.sh bin/deb/ephemera $(VERSION) bin

.PHONY: vet
vet: ## go vet every package.
	$(GO) vet $(PKGS)

.PHONY: fmtcheck
fmtcheck: ## Fail when a Go file is not gofmt-formatted.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: test
test: vet ## vet, then every test with the race detector (LXD tests skip when LXD is absent); prints each package's time.
	@log=$$(mktemp); set -o pipefail; \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS) 2>&1 | tee $$log; status=$$?; \
	bash deploy/dev/testtimes.sh $(TEST_TIMEOUT) < $$log; rm -f $$log; exit $$status

.PHONY: bench
bench: ## Run every benchmark once; print one table of figures and write bench/results.json.
	@mkdir -p bench
	set -o pipefail; $(GO) test -p 1 -run '^$$' -bench . -benchtime 1x -timeout 60m $(PKGS) | tee bench/raw.txt
	$(GO) run ./cmd/ephemera-benchtable -json bench/results.json < bench/raw.txt

.PHONY: lxd-dev
lxd-dev: ## Install and start a local LXD with the ephemera-test image (root, Debian; idempotent). LXD_STORAGE=btrfs adds a btrfs storage pool.
	bash deploy/lxd/setup.sh

.PHONY: standin-image
standin-image: ## Build the stand-in runner into the LXD image ephemera-standin (for demo and end-to-end tests).
	bash deploy/lxd/standin-image.sh

.PHONY: runner-base
runner-base: ## Build the Debian base ephemera-base-bookworm (mmdebstrap; systemd, cloud-init) into LXD; cached by its inputs.
	bash deploy/lxd/runner-base.sh

.PHONY: standin-runner
standin-runner: ## Build the stand-in runner tarball bin/actions-runner-linux-<arch>-<version>.tar.gz (laid out like the real runner).
	bash deploy/lxd/standin-runner.sh bin

.PHONY: build-demo
build-demo: ## Build bin/ephemera-demo (the demo is not part of the ephemera binary).
	$(GO) build -trimpath -o bin/ephemera-demo ./cmd/ephemera-demo

.PHONY: demo
demo: lxd-dev standin-image build-demo ## The whole system on this machine: real LXD containers, the GitHub stand-in, 30 jobs.
	bin/ephemera-demo $(DEMO_FLAGS)

.PHONY: run
run: build ## Start `ephemera serve` with deploy/config.dev.yaml (dev secrets under .dev/).
	bash deploy/dev/run.sh $(BIN)

.PHONY: check
check: fmtcheck test ## What CI runs: gofmt check, vet, race tests.

.PHONY: clean
clean: ## Remove build output.
	rm -rf bin .dev
