#!/usr/bin/env bash
# The test command README.md gives: every package with the race detector. Extra arguments go
# to `go test` (e.g. scripts/test.sh -run TestRestart ./app/).
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1
if [ $# -eq 0 ]; then set -- ./...; fi
go test -race -count=1 -timeout 30m "$@"
