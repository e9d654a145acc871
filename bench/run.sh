#!/bin/sh
# Runs Moat's benchmarks (as root: they start real daemons and containers)
# and prints the figures docs/benchmarks.md reports.
set -eu
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"
go test -run '^$' -bench 'GetServer' -benchtime 5000x -count 3 ./bench/
go test -run '^$' -bench 'TimeToReady|IdleRSS' -benchtime 20x -count 3 ./bench/
# Everything else that has a benchmark (drivers, TLS, tokens, ...).
go test -run '^$' -bench . -benchtime 100x ./internal/... ./test/... 2>/dev/null | grep -E '^(Benchmark|ok|FAIL)'
