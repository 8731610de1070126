# shellcheck shell=bash
# The tools of the generated-client tests (tests/e2e/clients.rs): openapi-python-client and
# its run-time dependencies in a venv, openapi-typescript, openapi-fetch and tsc from npm.
# `./dev test` calls ensure_client_tools; each half reinstalls only when its pinned list
# changed, so a second call costs two checksums.

CLIENTS_VENV="$AIMC_ROOT/.local/clients-venv"
CLIENTS_PY_REQUIREMENTS="$AIMC_ROOT/tests/clients/python/requirements.txt"
CLIENTS_TS_DIR="$AIMC_ROOT/tests/clients/ts"

# The checksum of the pinned list a directory was installed from, kept inside it.
clients_stamp_matches() {
  local stamp=$1 list=$2
  [[ -f $stamp ]] && [[ $(cat "$stamp") == "$(sha256sum <"$list")" ]]
}

ensure_client_python() {
  local stamp="$CLIENTS_VENV/.aimc-requirements.sha256"
  if [[ -x $CLIENTS_VENV/bin/python ]] && clients_stamp_matches "$stamp" "$CLIENTS_PY_REQUIREMENTS"; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "the client tests need Python 3.10 or later, python3 is $(python3 --version 2>&1)"
  # A venv whose interpreter is gone (python upgraded or removed) cannot be repaired.
  if [[ -d $CLIENTS_VENV ]] && ! "$CLIENTS_VENV/bin/python" -c '' >/dev/null 2>&1; then
    rm -rf "$CLIENTS_VENV"
  fi
  if [[ ! -x $CLIENTS_VENV/bin/python ]]; then
    log "client tests: creating the Python venv $CLIENTS_VENV"
    mkdir -p "$(dirname "$CLIENTS_VENV")"
    if ! python3 -m venv "$CLIENTS_VENV" >/dev/null 2>&1; then
      # Debian's python3 has no ensurepip without python3-venv.
      rm -rf "$CLIENTS_VENV"
      apt_install python3-venv
      python3 -m venv "$CLIENTS_VENV" || die "python3 -m venv $CLIENTS_VENV failed"
    fi
  fi
  log "client tests: installing tests/clients/python/requirements.txt into $CLIENTS_VENV"
  "$CLIENTS_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --requirement "$CLIENTS_PY_REQUIREMENTS" || die "pip install of the client tests' tools failed"
  sha256sum <"$CLIENTS_PY_REQUIREMENTS" >"$stamp"
}

# `npm ci` in a directory of the repository (tests/clients/ts, tests/browser) when its
# package-lock.json changed since the last install; `what` names the tests in the log.
npm_ci_pinned() {
  local dir=$1 what=$2
  local stamp="$dir/node_modules/.aimc-package-lock.sha256"
  if command -v node >/dev/null 2>&1 && clients_stamp_matches "$stamp" "$dir/package-lock.json"; then
    return 0
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  log "$what: npm ci in ${dir#"$AIMC_ROOT"/}"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
    die "npm ci in ${dir#"$AIMC_ROOT"/} failed"
  sha256sum <"$dir/package-lock.json" >"$stamp"
}

ensure_client_typescript() {
  npm_ci_pinned "$CLIENTS_TS_DIR" "client tests"
}

ensure_client_tools() {
  ensure_client_python
  ensure_client_typescript
  # Where tests/e2e/clients.rs looks (these are also its defaults).
  export AIMC_CLIENTS_VENV="$CLIENTS_VENV"
  export AIMC_CLIENTS_NODE_MODULES="$CLIENTS_TS_DIR/node_modules"
}
