# Moat: build, set up and test. Run as root on Debian 12.
GO ?= go
BIN := bin
STATE_DIR ?= /var/lib/moat
GROUP ?= moat
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build deps setup test unit bench stop vet

all: build

deps:
	./scripts/install-deps.sh

build:
	$(GO) build -o $(BIN)/moatd ./cmd/moatd
	$(GO) build -o $(BIN)/moat ./cmd/moat

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || { echo "gofmt needed"; exit 1; }

# setup installs the dependencies, builds, creates the admin group and starts
# moatd in the background with its embedded defaults.
setup: deps build
	./scripts/setup.sh

stop:
	./scripts/stop.sh

# test runs every test: unit, integration (real moatd, real lxc client).
test: vet
	$(GO) test -count=1 -timeout 15m ./...

bench:
	./bench/run.sh
