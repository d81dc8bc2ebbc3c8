# Shared by scripts/rt-server.sh and scripts/redmine-server.sh: throw-away help desk instances,
# one per directory, each server in a process group of its own. Sourced, not run; the sourcing
# script defines `usage` and `die`.

# The absolute path of an instance directory (created when asked to).
instance_dir() {
  [ -n "${1:-}" ] || usage
  if [ "${2:-}" = create ]; then
    mkdir -p "$1"
  fi
  [ -d "$1" ] || die "no such directory: $1"
  (cd "$1" && pwd)
}

free_port() {
  perl -MIO::Socket::INET -e \
    'my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1", LocalPort => 0, ReuseAddr => 1) or die "$!\n"; print $s->sockport, "\n"'
}

# Whether process group $1 has a live (not zombie) member.
group_alive() {
  ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# The process group that DIR/pid names, if any of it is still alive.
running_pgid() {
  local pid
  [ -f "$1/pid" ] || return 1
  pid=$(cat "$1/pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  group_alive "$pid" || return 1
  echo "$pid"
}
