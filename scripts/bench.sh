#!/usr/bin/env bash
# Throughput benchmark of `sentinela scan` on ONE core, compared with ripgrep (same regex set)
# and fail2ban-regex: its sshd filter alone, and the set of its filters that covers the
# services the pack reads from an auth/syslog file (fail2ban runs one filter per jail, each
# over the whole log, and fail2ban-regex takes one filter per run, so the set is timed as the
# sum of one run per filter).
#
#   scripts/bench.sh                      # 200 MiB auth.log + 200 MiB access.log
#   BENCH_MB=50 scripts/bench.sh          # smaller corpus
#   BENCH_INSTALL=1 scripts/bench.sh      # apt-get install time, ripgrep, fail2ban if missing
#
# Environment:
#   BENCH_MB        size of each generated log in MiB (default 200)
#   BENCH_F2B_MB    size of the auth.log slice given to fail2ban-regex (default 20)
#   BENCH_F2B_SET   fail2ban filters of the set (default: sshd pam-generic dovecot postfix
#                   courier-auth dropbear proftpd pure-ftpd vsftpd webmin-auth mysqld-auth);
#                   empty: time the sshd filter only
#   BENCH_SEED      corpus seed (default 42)
#   BENCH_TIMEOUT   bound on each measured run, seconds (default 600)
#   BENCH_DIR       work directory (default: a fresh temporary directory, removed at exit)
#   BENCH_KEEP=1    keep the temporary directory
#   BENCH_CPU       core to pin to with taskset (default 0)
#   BENCH_INSTALL=1 allow apt-get install of missing tools
#
# Missing optional tools (rg, fail2ban-regex, /usr/bin/time, taskset, python3) are skipped with
# a message. Peak RSS comes from GNU time (%M).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
MB=${BENCH_MB:-200}
F2B_MB=${BENCH_F2B_MB:-20}
SEED=${BENCH_SEED:-42}
TMO=${BENCH_TIMEOUT:-600}
CPU=${BENCH_CPU:-0}

say() { printf '[bench] %s\n' "$*" >&2; }

if [[ ${BENCH_INSTALL:-0} == 1 ]]; then
    need=()
    [[ -x /usr/bin/time ]] || need+=(time)
    command -v rg >/dev/null || need+=(ripgrep)
    command -v fail2ban-regex >/dev/null || need+=(fail2ban)
    if ((${#need[@]})); then
        say "installing ${need[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    fi
fi

say "building release binaries"
cargo build --release --bins --examples >&2
BIN=$ROOT/target/release

if [[ -n ${BENCH_DIR:-} ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sentinela-bench.XXXXXX")
    if [[ ${BENCH_KEEP:-0} != 1 ]]; then
        trap 'rm -rf "$WORK"' EXIT
    else
        say "keeping $WORK"
    fi
fi

say "generating ${MB} MiB per log (seed $SEED) in $WORK"
"$BIN/sentinela-corpus" --out "$WORK" --size-mb "$MB" --seed "$SEED" >&2

PIN=()
if command -v taskset >/dev/null; then
    PIN=(taskset -c "$CPU")
else
    say "taskset not found: runs are not pinned to one core"
fi
HAVE_TIME=0
if [[ -x /usr/bin/time ]]; then
    HAVE_TIME=1
else
    say "/usr/bin/time not found (BENCH_INSTALL=1 installs it): peak RSS is not measured"
fi

ROWS=$WORK/rows.tsv
: >"$ROWS"

# measure NAME FILE OUT -- CMD...: runs CMD (stdout to OUT) bounded by the timeout, pinned, and
# appends "NAME FILE bytes lines seconds rss_kb status" to $ROWS.
measure() {
    local name=$1 file=$2 out=$3
    shift 4
    local bytes lines secs rss status=ok rc=0
    bytes=$(stat -c %s "$file")
    lines=$(wc -l <"$file")
    if ((HAVE_TIME)); then
        /usr/bin/time -f '%e %M' -o "$WORK/time.txt" timeout "$TMO" "${PIN[@]}" "$@" \
            >"$out" 2>"$out.err" || rc=$?
        # GNU time prefixes "Command exited with non-zero status N" on failure.
        read -r secs rss < <(tail -n 1 "$WORK/time.txt")
    else
        local t0 t1
        t0=$(date +%s.%N)
        timeout "$TMO" "${PIN[@]}" "$@" >"$out" 2>"$out.err" || rc=$?
        t1=$(date +%s.%N)
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
        rss=NA
    fi
    # rg -c exits 1 when nothing matched; that is not a failure.
    if ((rc == 124)); then
        status="TIMEOUT(${TMO}s)"
    elif ((rc != 0)) && ! [[ $name == rg && $rc == 1 ]]; then
        status="exit$rc"
        say "$name on $(basename "$file") failed with exit $rc: $(head -c 400 "$out.err")"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$(basename "$file")" "$bytes" "$lines" \
        "$secs" "$rss" "$status" >>"$ROWS"
}

# (a) sentinela, full shipped pack.
declare -A INCIDENTS
for f in auth.log access.log; do
    say "sentinela scan $f"
    measure sentinela "$WORK/$f" "$WORK/sentinela-$f.json" -- "$BIN/sentinela" scan --format json "$WORK/$f"
    if command -v python3 >/dev/null; then
        INCIDENTS[$f]=$(python3 - "$WORK/sentinela-$f.json" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    s = d.get("summary", {})
    n = len(d.get("incidents", []))
    print(f"{n} incidents; engine's own count: {s.get('lines')} lines in {s.get('seconds')} s")
except Exception as e:
    print(f"unreadable output: {e}")
EOF
)
    fi
done

# (b) ripgrep with the same regex set.
PATTERNS=$WORK/patterns.txt
if command -v rg >/dev/null; then
    if "$BIN/sentinela" detectors --patterns >"$PATTERNS.raw" 2>/dev/null && [[ -s $PATTERNS.raw ]]; then
        say "patterns from 'sentinela detectors --patterns'"
    elif "$BIN/sentinela" patterns >"$PATTERNS.raw" 2>/dev/null && [[ -s $PATTERNS.raw ]]; then
        say "patterns from 'sentinela patterns'"
    elif command -v python3 >/dev/null && python3 -c 'import tomllib' 2>/dev/null; then
        say "patterns extracted from detectors/*.toml"
        python3 - "$ROOT"/detectors/*.toml >"$PATTERNS.raw" <<'EOF'
import sys, tomllib
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    for det in doc.get("detector", []):
        for p in det.get("patterns", []):
            print(p)
EOF
    else
        : >"$PATTERNS.raw"
    fi
    # rg accepts no dotted (nor duplicate, once the set is joined) group names: make every
    # named group a plain group.
    sed -E 's/\(\?P?<[A-Za-z_][A-Za-z0-9_.]*>/(?:/g' "$PATTERNS.raw" | grep -v '^[[:space:]]*$' >"$PATTERNS" || true
    if [[ -s $PATTERNS ]]; then
        say "$(wc -l <"$PATTERNS") patterns for rg"
        for f in auth.log access.log; do
            say "rg -c -f patterns.txt $f"
            measure rg "$WORK/$f" "$WORK/rg-$f.out" -- rg -c -f "$PATTERNS" "$WORK/$f"
        done
    else
        say "no patterns found (need 'sentinela patterns' or python3 >= 3.11): skipping rg"
    fi
else
    say "rg not found (BENCH_INSTALL=1 installs ripgrep): skipping"
fi

# (c) fail2ban-regex on a slice of auth.log: its sshd filter, then the rest of the set.
F2B_DIR=/etc/fail2ban/filter.d
F2B_FILTER=$F2B_DIR/sshd.conf
F2B_SET=${BENCH_F2B_SET-sshd pam-generic dovecot postfix courier-auth dropbear proftpd pure-ftpd vsftpd webmin-auth mysqld-auth}
if command -v fail2ban-regex >/dev/null && [[ -f $F2B_FILTER ]]; then
    SLICE=$WORK/auth-slice.log
    head -c "$((F2B_MB * 1048576))" "$WORK/auth.log" | head -n -1 >"$SLICE"
    say "fail2ban-regex on a ${F2B_MB} MiB slice"
    measure fail2ban-regex "$SLICE" "$WORK/f2b.out" -- fail2ban-regex "$SLICE" "$F2B_FILTER"
    for f in $F2B_SET; do
        [[ $f == sshd ]] && continue
        if [[ -f $F2B_DIR/$f.conf ]]; then
            say "fail2ban-regex, filter $f"
            measure "f2b+$f" "$SLICE" "$WORK/f2b-$f.out" -- fail2ban-regex "$SLICE" "$F2B_DIR/$f.conf"
        else
            say "fail2ban filter $f not found: left out of the set"
        fi
    done
    say "sentinela scan on the same slice"
    measure sentinela "$SLICE" "$WORK/sentinela-slice.json" -- "$BIN/sentinela" scan --format json "$SLICE"
else
    say "fail2ban-regex or $F2B_FILTER not found (BENCH_INSTALL=1 installs fail2ban): skipping"
fi

# Summary.
echo
echo "sentinela benchmark: ${MB} MiB per log, seed $SEED, pinned: ${PIN[*]:-no}, $(nproc) cores, $(uname -m)"
awk -F'\t' '
function mb(b) { return b / 1048576 }
{
    tool[NR] = $1; file[NR] = $2; bytes[NR] = $3; lines[NR] = $4; secs[NR] = $5; rss[NR] = $6; st[NR] = $7
    if (($1 == "fail2ban-regex" || $1 ~ /^f2b\+/) && $7 == "ok") { setsecs += $5; setn++; setlines = $4 }
    s = ($5 > 0) ? $5 : 0.01
    mbs[NR] = mb($3) / s; lps[NR] = $4 / s
    if ($7 == "ok") { speed[$1 "|" $2] = mbs[NR]; lspeed[$1 "|" $2] = lps[NR] }
}
END {
    printf "%-15s %-15s %8s %8s %8s %12s %9s  %s\n", "tool", "file", "MB", "seconds", "MB/s", "lines/s", "RSS MB", "status"
    for (i = 1; i <= NR; i++) {
        r = (rss[i] == "NA") ? "n/a" : sprintf("%.1f", rss[i] / 1024)
        printf "%-15s %-15s %8.1f %8.2f %8.1f %12.0f %9s  %s\n", tool[i], file[i], mb(bytes[i]), secs[i], mbs[i], lps[i], r, st[i]
    }
    print ""
    split("auth.log access.log", fs, " ")
    for (k = 1; k <= 2; k++) {
        f = fs[k]
        if (("sentinela|" f) in speed && ("rg|" f) in speed)
            printf "sentinela/rg throughput on %-10s: %.2f\n", f, speed["sentinela|" f] / speed["rg|" f]
    }
    if (("sentinela|auth-slice.log") in lspeed && ("fail2ban-regex|auth-slice.log") in lspeed)
        printf "sentinela/fail2ban-regex lines/s on the %s slice, its sshd filter: %.1f\n", "auth.log", lspeed["sentinela|auth-slice.log"] / lspeed["fail2ban-regex|auth-slice.log"]
    if (setn > 1 && ("sentinela|auth-slice.log") in lspeed)
        printf "sentinela/fail2ban-regex lines/s on the %s slice, its set of %d filters (%.1f s in all): %.1f\n", "auth.log", setn, setsecs, lspeed["sentinela|auth-slice.log"] / (setlines / setsecs)
}' "$ROWS"
for f in auth.log access.log; do
    [[ -n ${INCIDENTS[$f]:-} ]] && echo "sentinela on $f: ${INCIDENTS[$f]}"
done
if [[ -f $WORK/rg-auth.log.out ]]; then
    rg_count() { local n; n=$(cat "$1" 2>/dev/null) || true; echo "${n:-0}"; }
    echo "rg matching lines: auth.log $(rg_count "$WORK/rg-auth.log.out"), access.log $(rg_count "$WORK/rg-access.log.out")" \
        "(rg's RSS counts the memory-mapped input file)"
fi
if [[ -f $WORK/f2b.out ]]; then
    grep -E '^Lines:' "$WORK/f2b.out" | sed 's/^/fail2ban-regex /' || true
fi

# The daemon end to end: `sentinela run` following a growing file, append-to-incident
# latency, idle CPU (examples/bench_run.rs).
if [[ ${BENCH_RUN:-1} == 1 ]]; then
    echo
    echo "sentinela run (daemon), ${MB} MiB auth log:"
    timeout "${BENCH_TIMEOUT:-900}" target/release/examples/bench_run "$MB" || say "bench_run failed"
fi
