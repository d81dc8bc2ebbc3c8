#!/usr/bin/env bash
# Drives a running test RT (scripts/rt-server.sh start DIR) through REST 2.0 the way sentinela's
# help desk adapter will, and checks the answers, including RT's quiet failure modes.
# Usage: scripts/rt/smoke.sh DIR [--latency]. Needs curl and jq.
set -euo pipefail

dir=${1:?usage: scripts/rt/smoke.sh DIR [--latency]}
latency=${2:-}
api="$(cat "$dir/url")/REST/2.0"
token=$(cat "$dir/token")
queue=Security
fp="smoke-$(date +%s)-$$"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

check() { # check DESCRIPTION COMMAND...: counts a pass or a failure
  local what=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    printf 'ok   %s\n' "$what"
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n     status %s, body: %s\n' "$what" "$code" "$(head -c 600 "$tmp/body")"
  fi
}

# req METHOD PATH [JSON]: sets $code, leaves the body in $tmp/body and the headers in $tmp/head.
req() {
  local method=$1 path=$2
  local args=(-s -X "$method" -o "$tmp/body" -D "$tmp/head" -w '%{http_code}'
    -H "Authorization: token $token")
  if [ $# -ge 3 ]; then
    args+=(-H 'Content-Type: application/json' --data-binary "$3")
  fi
  code=$(curl "${args[@]}" "$api$path")
}
body() { jq -r "$1" "$tmp/body"; }
is() { [ "$1" = "$2" ]; }
header() { tr -d '\r' <"$tmp/head" | sed -n "s/^$1: //Ip" | head -n 1; }
urlenc() { jq -rn --arg v "$1" '$v|@uri'; }

# Start-up checks the adapter should make: the queue and both fields exist, the values are allowed.
req GET "/queue/$queue"
check "GET /queue/$queue: 200" is "$code" 200
check "queue lists both ticket custom fields" \
  is "$(body '[.TicketCustomFields[].name] | sort | join(",")')" "SentinelaFingerprint,Severity"
sev_id=$(body '.TicketCustomFields[] | select(.name == "Severity") | .id')
req GET "/customfield/$sev_id"
check "GET /customfield/$sev_id: Severity is a single-value select with the 5 levels" \
  is "$(body '[.Type, .MaxValues, (.Values | join(","))] | join(" ")')" "Select 1 info,low,medium,high,critical"

# Create.
create=$(jq -cn --arg q "$queue" --arg fp "$fp" '{Queue: $q, Subject: "smoke: ssh brute force from 203.0.113.9",
  Priority: 30, Content: "first line\nsecond line", ContentType: "text/plain",
  CustomFields: {SentinelaFingerprint: $fp, Severity: "high"}}')
req POST /ticket "$create"
check "POST /ticket: 201" is "$code" 201
id=$(body .id)
# shellcheck disable=SC2016 # $i is jq's
check "create answer: {id (a string), type, _url}" \
  is "$(body '[(.id | type), .type, (.id as $i | ._url | endswith("/REST/2.0/ticket/" + $i))] | map(tostring) | join(" ")')" \
  "string ticket true"
check "create answer: Location header /REST/2.0/ticket/ID" is "$(header Location)" "/REST/2.0/ticket/$id"

# Read back: RT drops unknown fields and disallowed values without an error, so check them.
req GET "/ticket/$id"
check "GET /ticket/$id: 200" is "$code" 200
check "ticket: id is a number here, Priority a string, Status new, Queue by id" \
  is "$(body '[(.id | type), .Priority, .Status, (.Queue.id | type)] | join(" ")')" "number 30 new string"
cf() { body ".CustomFields[] | select(.name == \"$1\") | .values | join(\",\")"; }
check "ticket: SentinelaFingerprint is set" is "$(cf SentinelaFingerprint)" "$fp"
check "ticket: Severity is set" is "$(cf Severity)" "high"

# Comment.
req POST "/ticket/$id/comment" '{"Content": "seen again: 5 more attempts", "ContentType": "text/plain"}'
check "POST /ticket/$id/comment: 201" is "$code" 201
check "comment answer: [\"Comments added\"], Location /REST/2.0/transaction/N" \
  is "$(body 'join("|")') $(header Location | sed 's/[0-9]*$/N/')" "Comments added /REST/2.0/transaction/N"
req GET "/ticket/$id/history?fields=Type"
check "history holds the Create and the Comment" \
  is "$(body '[.items[].Type] | join(",")')" "Create,Comment"

# Dedup search: open tickets with this fingerprint.
search() {
  local q="'CF.{SentinelaFingerprint}'='$fp' AND Status='__Active__'"
  req GET "/tickets?query=$(urlenc "$q")&fields=Status,Priority,CustomFields"
}
search
check "search: 200, finds the ticket" is "$code $(body '[.items[].id] | join(",")')" "200 $id"
check "search with fields=...: items carry Status and CustomFields" \
  is "$(body '.items[0] | [.Status, (.CustomFields[] | select(.name == "Severity") | .values[0])] | join(" ")')" "new high"

# Resolve.
req PUT "/ticket/$id" '{"Status": "resolved"}'
check "PUT Status resolved: 200 and a message" \
  is "$code $(body '.[0]')" "200 Ticket $id: Status changed from 'new' to 'resolved'"
search
check "search no longer finds the resolved ticket" is "$code $(body '.count') $(body '.items | length')" "200 0 0"

# Reopen, and a status RT refuses: still 200, with the refusal as the message.
req PUT "/ticket/$id" '{"Status": "open"}'
check "PUT Status open: 200" is "$code" 200
search
check "search finds the reopened ticket" is "$(body '[.items[].id] | join(",")')" "$id"
req PUT "/ticket/$id" '{"Status": "no-such-status"}'
check "PUT an unknown Status: 200 with the refusal in the message" \
  is "$code $(body '.[0]')" "200 Ticket $id: Status 'no-such-status' isn't a valid status for this ticket."

# Priority and Severity changes.
req PUT "/ticket/$id" '{"Priority": 70, "CustomFields": {"Severity": "critical"}}'
check "PUT Priority 70 + Severity critical: 200" is "$code" 200
req GET "/ticket/$id"
check "ticket: Priority 70, Severity critical, Status open" \
  is "$(body '.Priority') $(cf Severity) $(body .Status)" "70 critical open"

# RT's quiet failure modes the adapter must guard against.
req POST /ticket "$(jq -cn --arg q "$queue" '{Queue: $q, Subject: "smoke: bad fields",
  CustomFields: {NoSuchField: "x", Severity: "urgent"}}')"
bad=$(body .id)
check "create with an unknown field and a disallowed select value: still 201" is "$code" 201
req GET "/ticket/$bad"
check "... and neither value is stored" is "$(cf Severity)|$(body '[.CustomFields[].name] | sort | join(",")')" \
  "|SentinelaFingerprint,Severity"
req PUT "/ticket/$bad" '{"CustomFields": {"Severity": "urgent"}}'
check "PUT a disallowed select value: 200, message 'Invalid value for custom field'" \
  is "$code $(body '.[0]')" "200 Invalid value for custom field"
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -X POST -H "Authorization: token $token" \
  --data-binary '{"Queue": "Security", "Subject": "x"}' "$api/ticket")
check "POST without Content-Type: application/json: 415" is "$code" 415
code=$(curl -s -o "$tmp/body" -w '%{http_code}' -H "Authorization: token 1-1-00000000000000000000000000000000" \
  "$api/queues/all")
check "wrong token: 401 {\"message\":\"Unauthorized\"}" is "$code $(body .message)" "401 Unauthorized"
req POST /ticket '{"Queue": "General", "Subject": "x"}'
check "queue without CreateTicket: 403 with a message" is "$code" 403
req GET /ticket/999999
check "missing ticket: 404" is "$code" 404

if [ "$latency" = --latency ]; then
  # Sequential requests; curl's time_total, in milliseconds.
  measure() { # measure LABEL N METHOD PATH [JSON]
    local label=$1 n=$2 i t total=0 max=0
    shift 2
    for ((i = 0; i < n; i++)); do
      local args=(-s -o /dev/null -w '%{time_total}' -X "$1" -H "Authorization: token $token")
      [ $# -ge 3 ] && args+=(-H 'Content-Type: application/json' --data-binary "$3")
      t=$(curl "${args[@]}" "$api$2" | awk '{printf "%d", $1 * 1000}')
      total=$((total + t))
      [ "$t" -gt "$max" ] && max=$t
    done
    printf 'latency %-34s n=%-3s mean %4d ms  max %4d ms\n' "$label" "$n" $((total / n)) "$max"
  }
  q=$(urlenc "'CF.{SentinelaFingerprint}'='$fp' AND Status='__Active__'")
  measure "GET /queues/all" 20 GET /queues/all
  measure "GET /ticket/ID" 20 GET "/ticket/$id"
  measure "GET /tickets?query=(dedup search)" 20 GET "/tickets?query=$q&fields=Status,CustomFields"
  measure "POST /ticket (with 2 CFs)" 10 POST /ticket "$create"
  measure "POST /ticket/ID/comment" 10 POST "/ticket/$id/comment" '{"Content": "x", "ContentType": "text/plain"}'
  measure "PUT /ticket/ID (Priority)" 10 PUT "/ticket/$id" '{"Priority": 40}'
fi

printf 'rt-smoke: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
