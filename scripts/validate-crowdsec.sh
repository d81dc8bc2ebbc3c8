#!/usr/bin/env bash
# Runs the shipped detector pack over the labelled CrowdSec hub samples and reports how many
# labelled lines and alerted cases it catches. Usage: scripts/validate-crowdsec.sh [DATA_DIR]
# (default: ../shared/validation/crowdsec-hub next to the repository).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/validation/crowdsec-hub}
[ -f "$data/lines.jsonl" ] || { echo "no data set at $data" >&2; exit 2; }
cargo build --release --quiet --bin sentinela
exec python3 - "$data" target/release/sentinela <<'PY'
import json, subprocess, sys, collections
data, exe = sys.argv[1], sys.argv[2]
cases = [json.loads(l) for l in open(f"{data}/cases.jsonl")]
lines = [json.loads(l) for l in open(f"{data}/lines.jsonl")]

def run(args, path):
    out = subprocess.run([exe] + args + [f"{data}/{path}"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"sentinela failed on {path}: {out.stderr}")
    return out.stdout

hits = {}       # (case, line) -> detectors
incidents = {}  # case -> incidents
for c in cases:
    for l in run(["match", "--format", "jsonl"], c["log"]).splitlines():
        h = json.loads(l)
        hits.setdefault((c["case"], h["line"]), set()).add(h["detector"])
    incidents[c["case"]] = json.loads(run(["scan", "--format", "json"], c["log"]))["incidents"]

# Security-relevant parsed lines, by CrowdSec log_type.
signal = {"ssh_failed-auth", "ssh_bad_keyexchange", "ssh_refused_conn", "sshesame_login",
          "sshesame_input", "sshesame_cmd", "endlessh_accept", "apache-guacamole_failed_auth",
          "modsecurity", "iptables_drop"}
by_type = collections.defaultdict(lambda: [0, 0])
for l in lines:
    if l["parse_ok"] is True and l["log_type"] in signal:
        t = by_type[l["log_type"]]
        t[1] += 1
        t[0] += (l["case"], l["line"]) in hits
print("Labelled security lines flagged (any detector hit):")
tot = [0, 0]
for k in sorted(by_type):
    f, n = by_type[k]
    tot[0] += f; tot[1] += n
    print(f"  {k:<32} {f:>4} / {n:<4}")
print(f"  {'total':<32} {tot[0]:>4} / {tot[1]:<4} ({100*tot[0]/max(tot[1],1):.0f}%)")

wl = [l for l in lines if l["whitelisted"] is True]
wl_flag = sum((l["case"], l["line"]) in hits for l in wl)
print(f"Whitelisted (benign by a hub whitelist) lines flagged: {wl_flag} / {len(wl)}")
unparsed = [l for l in lines if l["parse_ok"] is False]
print(f"Lines CrowdSec does not parse, flagged by us: {sum((l['case'], l['line']) in hits for l in unparsed)} / {len(unparsed)}")

alerted = [c for c in cases if c["expected_alerts"] and c["alert_sources"]]
caught, missed = 0, []
for c in alerted:
    srcs = {i["fields"].get("source.address") for i in incidents[c["case"]]}
    if srcs & set(c["alert_sources"]):
        caught += 1
    else:
        missed.append(c["case"])
print(f"Cases with a CrowdSec alert where we open an incident for the alerted source: {caught} / {len(alerted)}")
print("  missed: " + ", ".join(missed))
quiet = [c for c in cases if c["expected_alerts"] == 0]
print(f"Cases expecting no alert where we open an incident: {sum(bool(incidents[c['case']]) for c in quiet)} / {len(quiet)}")
PY
