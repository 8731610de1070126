# shellcheck shell=bash
# A project-local PostgreSQL cluster for development and tests. It runs on its
# own port with its own data directory so that a system PostgreSQL (Debian's
# package starts one on 5432) neither matters to it nor is disturbed by it.

PG_DEFAULT_PORT=55432
PG_CONF_NAME=aimc-dev.conf

# Globals describing the cluster, filled by pg_select_cluster:
PG_DIR=""   # holds data/, the socket and the server log
PG_DATA=""
PG_BIN=""   # /usr/lib/postgresql/<major>/bin
PG_OWNER="" # set only when root, who must hand the server to another user
PG_PORT=""
PG_DIR_PROBLEM=""

pg_url() { printf 'postgres://aimc@127.0.0.1:%s/%s\n' "$1" "$2"; }

# Only server packages ship initdb and pg_ctl; postgresql-client alone also
# creates /usr/lib/postgresql/<major>/bin (for psql), so test for the tools.
pg_newest_bin() {
  local dir found=""
  while IFS= read -r dir; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
      found=$dir
    fi
  done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
  if [[ -z $found ]]; then
    return 1
  fi
  printf '%s\n' "$found"
}

pg_ensure_server_installed() {
  if pg_newest_bin >/dev/null; then
    return 0
  fi
  # The package also creates and starts its own cluster on 5432; we never use
  # it, so it is left as the package made it.
  apt_install postgresql
  pg_newest_bin >/dev/null || die "apt-get installed postgresql but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
}

# When the repo lives somewhere the server's user cannot reach (/root is 0700),
# the cluster moves to /var/tmp, keyed by the repo path so checkouts don't mix.
pg_fallback_dir() {
  printf '/var/tmp/aimc-pg-%s\n' "$(printf '%s' "$AIMC_ROOT" | sha256sum | cut -c1-12)"
}

pg_existing_dir() {
  local dir
  for dir in "$AIMC_LOCAL/pg" "$(pg_fallback_dir)"; do
    if [[ -f $dir/data/PG_VERSION ]]; then
      printf '%s\n' "$dir"
      return 0
    fi
  done
  return 1
}

# The socket path must fit in sockaddr_un (107 bytes with ".s.PGSQL.NNNNN"),
# and a server run by root on another user's behalf must reach the directory.
# On failure PG_DIR_PROBLEM says why, for the message that announces the move.
pg_dir_usable() {
  local dir=$1
  if ((${#dir} > 90)); then
    PG_DIR_PROBLEM="its path is too long for a Unix socket"
    return 1
  fi
  if [[ -n $PG_OWNER ]] && ! runuser -u "$PG_OWNER" -- test -x "$AIMC_LOCAL" 2>/dev/null; then
    PG_DIR_PROBLEM="user '$PG_OWNER' cannot reach it (a parent directory is not traversable)"
    return 1
  fi
}

# PostgreSQL refuses to run as root. Debian's package brings a `postgres`
# user; without it (binaries from elsewhere) a dedicated system user does.
pg_service_user() {
  if id -u postgres >/dev/null 2>&1; then
    printf 'postgres\n'
    return 0
  fi
  if ! id -u aimc-pg >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin aimc-pg >&2
  fi
  printf 'aimc-pg\n'
}

# cd / first: initdb and postgres fail when the current directory (the repo,
# possibly under /root) is unreadable to the user they run as.
pg_as_owner() {
  if [[ -n $PG_OWNER ]]; then
    (cd / && runuser -u "$PG_OWNER" -- "$@")
  else
    "$@"
  fi
}

# A cluster must be run by the major version that created it, which is not
# necessarily the newest one installed.
pg_select_bin_for_data() {
  local major
  major=$(<"$PG_DATA/PG_VERSION")
  PG_BIN=/usr/lib/postgresql/$major/bin
  [[ -x $PG_BIN/pg_ctl ]] ||
    die "the local cluster in $PG_DATA needs PostgreSQL $major, which is not installed; run ./dev services reset"
}

# Fills PG_DIR, PG_DATA, PG_OWNER, PG_BIN for an existing cluster; fails when
# there is none.
pg_select_existing() {
  PG_DIR=$(pg_existing_dir) || return 1
  PG_DATA=$PG_DIR/data
  PG_OWNER=""
  if ((EUID == 0)); then
    PG_OWNER=$(stat -c %U "$PG_DATA")
  fi
  pg_select_bin_for_data
}

pg_create_cluster() {
  PG_OWNER=""
  if ((EUID == 0)); then
    PG_OWNER=$(pg_service_user)
  fi
  PG_DIR=$AIMC_LOCAL/pg
  if ! pg_dir_usable "$PG_DIR"; then
    PG_DIR=$(pg_fallback_dir)
    log "PostgreSQL: not using $AIMC_LOCAL/pg: $PG_DIR_PROBLEM; the cluster goes to $PG_DIR instead"
  fi
  PG_DATA=$PG_DIR/data
  PG_BIN=$(pg_newest_bin)
  mkdir -p "$PG_DIR"
  if [[ -n $PG_OWNER ]]; then
    chown "$PG_OWNER:" "$PG_DIR"
  fi
  # Left over by an interrupted initdb: initdb refuses a non-empty directory.
  rm -rf "${PG_DATA:?}"
  log "PostgreSQL: creating a cluster in $PG_DATA ($(basename "$(dirname "$PG_BIN")"), run as ${PG_OWNER:-$(id -un)})"
  # aimc is the bootstrap superuser, so tests may CREATE DATABASE; trust auth
  # because the server listens on 127.0.0.1 only and holds throwaway data.
  if ! pg_as_owner "$PG_BIN/initdb" -D "$PG_DATA" -U aimc --auth=trust -E UTF8 --no-locale \
    >"$PG_DIR/initdb.log" 2>&1; then
    tail -n 20 "$PG_DIR/initdb.log" >&2
    die "initdb failed (full log: $PG_DIR/initdb.log)"
  fi
}

# Settings live in their own file, rewritten on every start, so a changed port
# or setting never needs editing postgresql.conf by hand.
pg_write_conf() {
  local conf="$PG_DATA/postgresql.conf"
  if ! grep -qF "include_if_exists '$PG_CONF_NAME'" "$conf"; then
    printf "\n# Development settings written by ./dev\ninclude_if_exists '%s'\n" "$PG_CONF_NAME" |
      pg_as_owner tee -a "$conf" >/dev/null
  fi
  # fsync, synchronous_commit and full_page_writes off trade crash safety for
  # speed: right for a dev/test cluster, never for real data. The test suite
  # gives every test its own database and pool, hence max_connections.
  pg_as_owner tee "$PG_DATA/$PG_CONF_NAME" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 400
CONF
}

pg_running() {
  pg_as_owner "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid"; }

pg_stop() {
  pg_as_owner "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 >/dev/null
}

pg_start() {
  local explicit=0 from attempt
  if [[ -n ${AIMC_LOCAL_PG_PORT:-} ]]; then
    explicit=1
  fi
  from=${AIMC_LOCAL_PG_PORT:-$PG_DEFAULT_PORT}
  # The port can be taken between the check and the bind (it lies in the
  # ephemeral range), so a failed start moves on to the next port.
  for attempt in 1 2 3 4 5; do
    PG_PORT=$(pick_port "$explicit" "$from" PostgreSQL)
    pg_write_conf "$PG_PORT"
    log "PostgreSQL: starting on 127.0.0.1:$PG_PORT"
    # pg_ctl detaches the server into its own session, so it outlives ./dev.
    if pg_as_owner "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 >/dev/null; then
      return 0
    fi
    tail -n 5 "$PG_DIR/postgres.log" >&2
    if [[ $explicit == 1 ]] || ! grep -q 'Address already in use' "$PG_DIR/postgres.log"; then
      break
    fi
    warn "PostgreSQL: port $PG_PORT was taken meanwhile (attempt $attempt); trying the next one"
    from=$((PG_PORT + 1))
  done
  die "PostgreSQL did not start (log: $PG_DIR/postgres.log)"
}

pg_ensure_database() {
  local admin_url exists
  admin_url=$(pg_url "$PG_PORT" postgres)
  exists=$("$PG_BIN/psql" "$admin_url" -XtAq -v ON_ERROR_STOP=1 \
    -c "select 1 from pg_database where datname = 'aimc'")
  if [[ $exists != 1 ]]; then
    log "PostgreSQL: creating database aimc"
    "$PG_BIN/psql" "$admin_url" -Xq -v ON_ERROR_STOP=1 -c 'create database aimc'
  fi
}

# Ensures the local cluster exists and runs; sets PG_PORT.
pg_up() {
  local current
  pg_ensure_server_installed
  if ! pg_select_existing; then
    pg_create_cluster
  fi
  if pg_running; then
    current=$(pg_running_port)
    if [[ -z ${AIMC_LOCAL_PG_PORT:-} || $AIMC_LOCAL_PG_PORT == "$current" ]]; then
      PG_PORT=$current
      log "PostgreSQL: reusing the running cluster on 127.0.0.1:$PG_PORT ($PG_DATA)"
      pg_ensure_database
      return 0
    fi
    log "PostgreSQL: restarting to move from port $current to $AIMC_LOCAL_PG_PORT"
    pg_stop
  fi
  pg_start
  pg_ensure_database
}

# True when the URL is one this script wrote for the local cluster, i.e. it
# comes from a sourced .local/env rather than from the user.
pg_is_local_url() {
  local port
  pg_select_existing || return 1
  port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$PG_DATA/$PG_CONF_NAME" 2>/dev/null) || return 1
  [[ -n $port ]] || return 1
  [[ $1 == "$(pg_url "$port" aimc)" || $1 == "$(pg_url "$port" postgres)" ]]
}

pg_down() {
  if ! pg_select_existing; then
    log "PostgreSQL: no local cluster"
    return 0
  fi
  if pg_running; then
    pg_stop
    log "PostgreSQL: stopped the local cluster ($PG_DATA)"
  else
    log "PostgreSQL: local cluster not running"
  fi
}

pg_delete_files() {
  local dir
  for dir in "$AIMC_LOCAL/pg" "$(pg_fallback_dir)"; do
    if [[ -e $dir ]]; then
      log "PostgreSQL: deleting $dir"
      rm -rf "${dir:?}"
    fi
  done
}
