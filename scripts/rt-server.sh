#!/usr/bin/env bash
# A throw-away Request Tracker 5 help desk for sentinela's integration tests: Debian's RT 5.0
# packages, a SQLite database and RT's own Starlet server on 127.0.0.1, one instance per directory.
#
#   scripts/rt-server.sh install            install the Debian packages (quiet; fast when present)
#   scripts/rt-server.sh start DIR [PORT]   new instance in DIR (empty, or an old instance: wiped),
#                                           serve it on PORT (default: a free one), wait for REST 2.0
#   scripts/rt-server.sh stop DIR           stop DIR's server (exit 0 when it is not running)
#   scripts/rt-server.sh restart DIR        stop, then serve the same database on the same port
#   scripts/rt-server.sh status DIR         exit 0 when DIR's server answers REST 2.0
#
# `start` and `restart` print `RT_URL=http://127.0.0.1:PORT`, `RT_TOKEN_FILE=DIR/token` and
# `RT_QUEUE=Security`, and leave in DIR: url, port, pid (the server's process group), token (the
# auth token of the non-admin API user `sentinela`, sent as `Authorization: token $(cat token)`),
# rt.sqlite, rt.log (RT's log), server.log (the server's stdout/stderr), setup.log, etc/ (the
# RT_SITE_CONFIG_DIR). What the instance holds is defined in scripts/rt/initdata.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
initdata="$here/rt/initdata"
rt_server=/usr/share/request-tracker5/libexec/rt-server
rt_setup=/usr/sbin/rt-setup-database-5
# curl: start's readiness check; jq: scripts/rt/smoke.sh.
packages=(request-tracker5 rt5-db-sqlite rt5-standalone dbconfig-no-thanks dma w3m curl jq)
queue=Security
# Marks a directory as a test instance, which `start` may wipe.
marker=.sentinela-rt-instance
# Seconds that `start` and `restart` wait for the API to answer.
wait_secs=${RT_START_TIMEOUT:-45}
# Starlet's worker processes (its default is 10, about 60 MB of private memory each).
workers=${RT_WORKERS:-4}

die() { printf 'rt-server: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# instance_dir, free_port, group_alive, running_pgid
. "$here/lib/instance.sh"

installed() {
  local p
  for p in "${packages[@]}"; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || return 1
  done
  [ -x "$rt_server" ] && [ -x "$rt_setup" ]
}

cmd_install() {
  if installed; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # dma is there so that RT's mail-transport-agent dependency does not pull in exim;
  # dbconfig-no-thanks keeps dbconfig-common from configuring a database of its own.
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
  installed || die "the packages did not install: ${packages[*]}"
}

rt_env() {
  export RT_SITE_CONFIG="$1/etc/RT_SiteConfig.pm"
  export RT_SITE_CONFIG_DIR="$1/etc/RT_SiteConfig.d"
}

write_config() {
  local dir=$1 port=$2
  mkdir -p "$dir/etc/RT_SiteConfig.d" "$dir/var" "$dir/mason" "$dir/sessions"
  # RT_SITE_CONFIG replaces /etc/request-tracker5/RT_SiteConfig.pm and RT_SITE_CONFIG_DIR both
  # RT_SiteConfig.d directories, so nothing from the system-wide configuration is read.
  printf '1;\n' >"$dir/etc/RT_SiteConfig.pm"
  cat >"$dir/etc/RT_SiteConfig.d/50-sentinela.pm" <<EOF
# Written by scripts/rt-server.sh for a test instance; not for production use.
Set(\$rtname, 'sentinela-test');
Set(\$Organization, 'sentinela.test');
Set(\$CorrespondAddress, 'rt@sentinela.test');
Set(\$CommentAddress, 'rt-comment@sentinela.test');
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$dir/rt.sqlite');
Set(\$WebDomain, '127.0.0.1');
Set(\$WebPort, $port);
Set(\$WebPath, '');
Set(\$WebBaseURL, 'http://127.0.0.1:$port');
# Bcrypt hashes the passwords and the auth tokens, and every token-authenticated request checks
# one: the default cost (12) costs about 0.6 s of CPU a request. Must be set before the
# database is initialised (the stored hashes keep the cost they were made with).
Set(\$BcryptCost, 4);
# Mail that scrips send goes to mbox files in \$RT::VarPath instead of a mail server.
Set(\$MailCommand, 'mbox');
Set(\$LogToSyslog, undef);
Set(\$LogToSTDERR, 'warning');
Set(\$LogToFile, 'info');
Set(\$LogDir, '$dir');
Set(\$LogToFileNamed, 'rt.log');
# Keep the instance's state out of the system-wide /var directories.
\$RT::VarPath = '$dir/var';
\$RT::MasonDataDir = '$dir/mason';
\$RT::MasonSessionDir = '$dir/sessions';
1;
EOF
}

api_ok() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    -H "Authorization: token $(cat "$1/token")" "$(cat "$1/url")/REST/2.0/queues/all") || true
  [ "$code" = 200 ]
}

# rt-setup-database exits 0 even when parts of the initdata fail: check what the tests rely on.
check_instance() {
  local fields
  fields=$(curl -s --max-time 5 -H "Authorization: token $(cat "$1/token")" \
    "$(cat "$1/url")/REST/2.0/queue/$queue" | jq -r '[.TicketCustomFields[]?.name] | sort | join(",")') || true
  [ "$fields" = "SentinelaFingerprint,Severity" ] && return 0
  printf 'rt-server: queue %s lacks its custom fields (has: %s); see %s/setup.log\n' \
    "$queue" "'$fields'" "$1" >&2
  return 1
}

fail_with_logs() {
  local dir=$1 f
  shift
  printf 'rt-server: %s\n' "$*" >&2
  for f in server.log rt.log; do
    if [ -s "$dir/$f" ]; then
      printf -- '--- tail of %s/%s ---\n' "$dir" "$f" >&2
      tail -n 40 "$dir/$f" >&2
    fi
  done
  exit 1
}

# Serves DIR's existing instance on DIR/port and waits for the REST 2.0 API.
launch() {
  local dir=$1 port pid pgid i
  port=$(cat "$dir/port")
  rt_env "$dir"
  : >>"$dir/server.log"
  printf -- '--- %s starting on 127.0.0.1:%s\n' "$(date -u +%FT%TZ)" "$port" >>"$dir/server.log"
  # setsid: the server and its workers get a process group (and session) of their own, whose id
  # is the server's pid, so `stop` can end all of it. A background job of a non-interactive shell
  # is not a group leader, so setsid runs the server in place instead of forking.
  setsid "$rt_server" --server Starlet --host 127.0.0.1 --port "$port" --max-workers "$workers" \
    >>"$dir/server.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  pgid=$(ps -o pgid= -p "$pid" | tr -d ' ') || true
  if [ "$pgid" != "$pid" ]; then
    sleep 0.2
    pgid=$(ps -o pgid= -p "$pid" | tr -d ' ') || true
    [ "$pgid" = "$pid" ] || fail_with_logs "$dir" "the server ($pid) did not get a process group of its own"
  fi
  for ((i = 0; i < wait_secs * 10; i++)); do
    if api_ok "$dir"; then
      if ! check_instance "$dir"; then
        kill -TERM -- "-$pid" 2>/dev/null || true
        fail_with_logs "$dir" "the instance in $dir is incomplete: server stopped"
      fi
      printf 'RT_URL=%s\nRT_TOKEN_FILE=%s\nRT_QUEUE=%s\n' "$(cat "$dir/url")" "$dir/token" "$queue"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || fail_with_logs "$dir" "the server exited before answering (port $port taken?)"
    sleep 0.1
  done
  kill -TERM -- "-$pid" 2>/dev/null || true
  fail_with_logs "$dir" "the REST 2.0 API did not answer within ${wait_secs}s on port $port"
}

cmd_start() {
  local dir port
  if [ ! -x "$rt_server" ] || [ ! -x "$rt_setup" ]; then
    die "RT is not installed: run '$0 install' first"
  fi
  dir=$(instance_dir "${1:-}" create)
  port=${2:-}
  if running_pgid "$dir" >/dev/null; then
    die "a server is already running for $dir (pid $(cat "$dir/pid")): stop it first"
  fi
  if [ -z "$port" ]; then
    port=$(free_port)
  fi
  if ! [[ $port =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port: $port"
  fi

  # A fresh instance: remove what an earlier one left here, but only from a directory that is
  # empty or holds an instance (the marker file), never from one that holds anything else.
  if [ ! -f "$dir/$marker" ] && [ -n "$(ls -A "$dir")" ]; then
    die "$dir is neither empty nor a test RT instance: refusing to wipe it"
  fi
  rm -rf "${dir:?}/etc" "${dir:?}/var" "$dir/mason" "$dir/sessions" "$dir"/rt.sqlite* \
    "$dir/token" "$dir/root-password" "$dir/pid" "$dir/port" "$dir/url" \
    "$dir/rt.log" "$dir/server.log" "$dir/setup.log"
  : >"$dir/$marker"
  write_config "$dir" "$port"
  echo "$port" >"$dir/port"
  echo "http://127.0.0.1:$port" >"$dir/url"
  (umask 077 && printf 'sentinela-test-root\n' >"$dir/root-password")

  rt_env "$dir"
  export SENTINELA_RT_TOKEN_FILE="$dir/token"
  {
    "$rt_setup" --action init --skip-create --root-password-file "$dir/root-password" &&
      "$rt_setup" --action insert --skip-create --datafile "$initdata"
  } >"$dir/setup.log" 2>&1 || {
    tail -n 40 "$dir/setup.log" >&2
    die "initialising the RT database failed (log: $dir/setup.log)"
  }
  [ -s "$dir/token" ] || die "initdata wrote no auth token to $dir/token (log: $dir/setup.log)"
  launch "$dir"
}

cmd_stop() {
  local dir pgid i
  dir=$(instance_dir "${1:-}")
  if ! pgid=$(running_pgid "$dir"); then
    rm -f "$dir/pid"
    return 0
  fi
  kill -TERM -- "-$pgid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    group_alive "$pgid" || break
    sleep 0.1
  done
  if group_alive "$pgid"; then
    kill -KILL -- "-$pgid" 2>/dev/null || true
    for ((i = 0; i < 20; i++)); do
      group_alive "$pgid" || break
      sleep 0.1
    done
  fi
  rm -f "$dir/pid"
}

cmd_restart() {
  local dir
  dir=$(instance_dir "${1:-}")
  if [ ! -f "$dir/port" ] || [ ! -f "$dir/etc/RT_SiteConfig.pm" ] || [ ! -f "$dir/rt.sqlite" ]; then
    die "no RT instance in $dir: use start"
  fi
  cmd_stop "$dir"
  launch "$dir"
}

cmd_status() {
  local dir
  dir=$(instance_dir "${1:-}")
  running_pgid "$dir" >/dev/null && [ -f "$dir/url" ] && api_ok "$dir"
}

case "${1:-}" in
  install) cmd_install ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) usage ;;
esac
