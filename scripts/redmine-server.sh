#!/usr/bin/env bash
# A throw-away Redmine 5 for sentinela's integration tests: Debian's Redmine packages, a SQLite
# database and the thin server on 127.0.0.1, one instance per directory.
#
#   scripts/redmine-server.sh install            install the Debian packages (quiet; fast when present)
#   scripts/redmine-server.sh start DIR [PORT]   new instance in DIR (empty, or an old instance: wiped),
#                                                serve it on PORT (default: a free one), wait for the API
#   scripts/redmine-server.sh stop DIR           stop DIR's server (exit 0 when it is not running)
#   scripts/redmine-server.sh restart DIR        stop, then serve the same database on the same port
#
# `start` and `restart` print `REDMINE_URL=http://127.0.0.1:PORT`, `REDMINE_KEY_FILE=DIR/key`,
# `REDMINE_PROJECT=security` and `REDMINE_FIELD=ID` (the fingerprint custom field), and leave in
# DIR: url, port, pid (the server's process group), key, field, redmine.sqlite3, server.log,
# setup.log. What the instance holds is defined in scripts/redmine/setup.rb.
#
# Debian's Redmine serves one instance per directory under /usr/share/redmine/instances/NAME
# (chosen with REDMINE_INSTANCE); each test instance links one there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
setup_rb="$here/redmine/setup.rb"
redmine=/usr/share/redmine
# thin: the web server Redmine's Gemfile picks up when installed; dbconfig-no-thanks keeps
# dbconfig-common from configuring a database of its own; curl for the readiness check.
packages=(redmine redmine-sqlite thin dbconfig-no-thanks curl)
marker=.sentinela-redmine-instance
wait_secs=${REDMINE_START_TIMEOUT:-60}

die() { printf 'redmine-server: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# instance_dir, free_port, group_alive, running_pgid
. "$here/lib/instance.sh"

installed() {
  local p
  for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || return 1
  done
  [ -d "$redmine/instances" ]
}

cmd_install() {
  installed && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  # The thin package starts a system service of its own; nothing here needs it.
  systemctl disable --now thin >/dev/null 2>&1 || true
  installed || die "the packages did not install: ${packages[*]}"
}

# The instance name Redmine knows DIR by (a link under $redmine/instances).
instance_name() {
  printf 'sentinela-%s' "$(printf '%s' "$1" | sha256sum | cut -c1-12)"
}

in_instance() {
  local dir=$1
  shift
  (cd "$redmine" && REDMINE_INSTANCE=$(instance_name "$dir") RAILS_ENV=production "$@")
}

api_ok() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    -H "X-Redmine-API-Key: $(cat "$1/key")" "$(cat "$1/url")/users/current.json") || true
  [ "$code" = 200 ]
}

fail_with_logs() {
  local dir=$1 f
  shift
  printf 'redmine-server: %s\n' "$*" >&2
  for f in server.log setup.log log/production.log; do
    if [ -s "$dir/$f" ]; then
      printf -- '--- tail of %s/%s ---\n' "$dir" "$f" >&2
      tail -n 40 "$dir/$f" >&2
    fi
  done
  exit 1
}

launch() {
  local dir=$1 port pid i
  port=$(cat "$dir/port")
  printf -- '--- %s starting on 127.0.0.1:%s\n' "$(date -u +%FT%TZ)" "$port" >>"$dir/server.log"
  # setsid: a process group of its own (id = the server's pid), so `stop` ends all of it.
  (cd "$redmine" && REDMINE_INSTANCE=$(instance_name "$dir") RAILS_ENV=production \
    exec setsid rails server -e production -b 127.0.0.1 -p "$port" -P "$dir/tmp/server.pid") \
    >>"$dir/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  for ((i = 0; i < wait_secs * 10; i++)); do
    if api_ok "$dir"; then
      printf 'REDMINE_URL=%s\nREDMINE_KEY_FILE=%s\nREDMINE_PROJECT=security\nREDMINE_FIELD=%s\n' \
        "$(cat "$dir/url")" "$dir/key" "$(cat "$dir/field")"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail_with_logs "$dir" "the server exited before answering (port $port taken?)"
    sleep 0.1
  done
  kill -TERM -- "-$pid" 2>/dev/null || true
  fail_with_logs "$dir" "the API did not answer within ${wait_secs}s on port $port"
}

cmd_start() {
  local dir port
  dir=$(instance_dir "${1:-}" create)
  port=${2:-$(free_port)}
  if [ -n "$(ls -A "$dir")" ]; then
    [ -e "$dir/$marker" ] || die "$dir is not empty and not a test instance: refusing to wipe it"
    cmd_stop "$dir"
    find "$dir" -mindepth 1 -delete
  fi
  touch "$dir/$marker"
  mkdir -p "$dir/config" "$dir/log" "$dir/tmp" "$dir/files"
  printf 'production:\n  adapter: sqlite3\n  database: %s/redmine.sqlite3\n' "$dir" >"$dir/config/database.yml"
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/config/secret_key.txt"
  ln -sfn "$dir" "$redmine/instances/$(instance_name "$dir")"
  echo "$port" >"$dir/port"
  echo "http://127.0.0.1:$port" >"$dir/url"
  {
    in_instance "$dir" rake db:migrate
    in_instance "$dir" env REDMINE_LANG=en rake redmine:load_default_data
    in_instance "$dir" rails runner "$setup_rb" "$dir/key"
  } >"$dir/setup.log" 2>&1 || fail_with_logs "$dir" "setting up the instance failed"
  sed -n 's/^custom field \([0-9]*\),.*/\1/p' "$dir/setup.log" >"$dir/field"
  [ -s "$dir/field" ] && [ -s "$dir/key" ] || fail_with_logs "$dir" "the setup did not report its custom field and key"
  launch "$dir"
}

cmd_stop() {
  local dir pgid i
  dir=$(instance_dir "${1:-}")
  if pgid=$(running_pgid "$dir"); then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      group_alive "$pgid" || break
      sleep 0.1
    done
    group_alive "$pgid" && kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
  rm -f "$dir/pid" "$dir/tmp/server.pid"
  return 0
}

cmd_restart() {
  local dir
  dir=$(instance_dir "${1:-}")
  [ -f "$dir/port" ] || die "$dir has no instance: use start"
  cmd_stop "$dir"
  launch "$dir"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  *) usage ;;
esac
