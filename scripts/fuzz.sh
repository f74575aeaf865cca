#!/usr/bin/env bash
# Runs every fuzz target for a budget given as go test's -fuzztime: a number of executions
# ("300000x", the default) or a duration ("30s"). Seed corpora live in each package's
# testdata/fuzz and always run as part of `go test`.
#
# CI uses a count: with a duration, Go's fuzz coordinator can fail a target with a bare
# "context deadline exceeded" at the end of the time, with no failing input
# (go.dev/issue/75804, not fixed in Go 1.26); a count has no deadline to race.
set -euo pipefail
cd "$(dirname "$0")/.."
t="${1:-300000x}"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg"
  done
done
