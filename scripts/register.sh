#!/usr/bin/env bash
# Register an account on a running hub, confirm it and log in, with the same curl calls as
# docs/api.md: a solved challenge → POST /api/v1/accounts → the code from the admin outbox →
# POST /api/v1/accounts/confirm → a new challenge → POST /api/v1/sessions.
#
#   go run ./cmd/devicehub serve --admin-token ADMIN &
#   TOKEN=$(scripts/register.sh anna@example.com 'correct horse battery')
#
# Prints the session token on stdout, each step on stderr. Needs curl 7.82+ (--json) and
# python3, and the outbox driver (the default), which keeps codes in the outbox.
# Environment: H (hub URL, http://127.0.0.1:8080), ADMIN (admin token, ADMIN).
set -euo pipefail

usage="usage: scripts/register.sh IDENTIFIER PASSWORD"
id=${1:?$usage}
password=${2:?$usage}
H=${H:-http://127.0.0.1:8080}
ADMIN=${ADMIN:-ADMIN}

step() { printf '== %s\n' "$*" >&2; }

# post PATH JSON: POST a JSON body; fails (showing the hub's error) on a non-2xx answer.
post() {
	curl -sS --fail-with-body "$H$1" --json "$2" || { echo >&2; return 1; }
}

# body KEY VALUE...: a JSON object of string values; a KEY ending in : takes VALUE as JSON.
body() {
	python3 -c 'import json, sys
a = sys.argv[1:]
print(json.dumps({k.rstrip(":"): json.loads(v) if k.endswith(":") else v for k, v in zip(a[::2], a[1::2])}))' "$@"
}

# solve: ask for a puzzle for the identifier and print its answer (docs/api.md, "Challenges").
solve() {
	post /api/v1/challenges "$(body identifier "$id")" | python3 -c 'import hashlib, json, sys
c = json.load(sys.stdin)
n = next(i for i in range(c["maxnumber"] + 1)
         if hashlib.sha256((c["salt"] + str(i)).encode()).hexdigest() == c["challenge"])
print(json.dumps({"salt": c["salt"], "number": n, "signature": c["signature"]}))'
}

step "register $id"
answer=$(solve)
req=$(body identifier "$id" password "$password" challenge: "$answer")
post /api/v1/accounts "$req" >&2
echo >&2

step "read the code from the outbox"
to=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$id")
code=$(curl -sS --fail-with-body "$H/api/v1/admin/outbox?to=$to&limit=1" -H "Authorization: Bearer $ADMIN" |
	python3 -c 'import json, re, sys
msgs = json.load(sys.stdin)["messages"]
m = re.search(r"code is (\d{6})", msgs[0]["body"]) if msgs else None
if not m:
    sys.exit("no code in the newest message: does the identifier already have an account? (log in, or use forgot password)")
print(m.group(1))')
echo "code $code" >&2

step "confirm"
req=$(body identifier "$id" code "$code")
post /api/v1/accounts/confirm "$req" >&2
echo >&2

step "log in"
answer=$(solve)
req=$(body identifier "$id" password "$password" challenge: "$answer")
post /api/v1/sessions "$req" | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
