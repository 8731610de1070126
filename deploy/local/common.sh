# shellcheck shell=bash
# Helpers shared by the ./dev subcommands. Sourced, never executed: ./dev sets
# `set -euo pipefail` and AIMC_ROOT before sourcing this file.

AIMC_LOCAL="$AIMC_ROOT/.local"
# shellcheck disable=SC2034 # read by services.sh and workflows.sh
AIMC_ENV_FILE="$AIMC_LOCAL/env"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

# Package installs need root; a developer account goes through sudo, root
# (containers, CI) may have no sudo at all.
as_root() {
  if ((EUID == 0)); then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $* (install sudo or run as root)"
  fi
}

apt_install() {
  log "installing Debian packages: $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# DEV_DRY_RUN=1 shows the expensive steps (cargo) without running them, so the
# orchestration can be checked without waiting for a build.
run() {
  if [[ ${DEV_DRY_RUN:-} == 1 ]]; then
    printf '[dry-run] %s\n' "$*" >&2
    return 0
  fi
  "$@"
}

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }
random_base64() { head -c "$1" /dev/urandom | base64 -w0; }

# Write a secret only once: rotating the JWT secret or the dev token on every
# call would invalidate tokens and clients people already have.
ensure_secret_file() {
  local file=$1 generator=$2
  if [[ ! -s $file ]]; then
    (umask 077 && "$generator" >"$file.tmp" && mv "$file.tmp" "$file")
  fi
}

# Bash's /dev/tcp avoids depending on ss/netstat, which a fresh Debian lacks.
port_in_use() {
  # shellcheck disable=SC2016 # $1 belongs to the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# First free port from $2 on. An explicit override ($1 = 1) must not silently
# move: the caller asked for that port, so a busy one is an error.
pick_port() {
  local explicit=$1 port=$2 name=$3
  if port_in_use "$port"; then
    if [[ $explicit == 1 ]]; then
      die "$name: port $port is already in use by another program"
    fi
    while port_in_use "$port"; do
      port=$((port + 1))
      ((port < $2 + 50)) || die "$name: no free port in $2..$port"
    done
    warn "$name: default port $2 is busy (another checkout?), using $port"
  fi
  printf '%s\n' "$port"
}

# HTTP status code of a GET to 127.0.0.1, "000" when nothing answers. curl is
# preferred, /dev/tcp keeps a curl-less fresh machine working.
http_status() {
  local port=$1 path=$2
  if command -v curl >/dev/null 2>&1; then
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path" || true
    return 0
  fi
  # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$2" >&3
    IFS=" " read -r _ code _ <&3
    printf "%s" "$code"
  ' _ "$port" "$path" 2>/dev/null || printf '000'
}

# Single quotes keep the values literal whatever they contain.
shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
