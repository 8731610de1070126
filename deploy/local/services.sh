# shellcheck shell=bash
# `./dev services up|down|reset`: PostgreSQL + OpenBao, and .local/env that
# points the server and the test suite at them.

JWT_SECRET_FILE="$AIMC_LOCAL/jwt-secret"

jwt_new_secret() { random_base64 48; }

# Values are single-quoted; PATH alone is left to expand when sourced.
write_env_file() {
  local tmp="$AIMC_ENV_FILE.tmp" name
  (
    umask 077
    {
      printf '# Written by ./dev services up. Load with: source .local/env\n'
      # shellcheck disable=SC2016 # $PATH must expand when the file is sourced
      printf 'export PATH=%s:"$PATH"\n' "$(shell_quote "$BAO_BIN_DIR")"
      for name in AIMC_DATABASE_URL AIMC_TEST_DATABASE_URL AIMC_VAULT_ADDR AIMC_VAULT_TOKEN \
        AIMC_JWT_HS256_SECRET AIMC_JWT_ISSUER AIMC_JWT_AUDIENCE; do
        printf 'export %s=%s\n' "$name" "$(shell_quote "${ENV_VALUES[$name]}")"
      done
    } >"$tmp"
  )
  mv "$tmp" "$AIMC_ENV_FILE"
}

services_up() {
  local external_db=0 external_vault=0 test_url=${AIMC_TEST_DATABASE_URL:-}
  declare -gA ENV_VALUES=()
  mkdir -p "$AIMC_LOCAL"

  # A URL equal to one a previous run wrote came from sourcing .local/env, not
  # from the user: it must not turn the local services into "external" ones.
  if [[ -n ${AIMC_DATABASE_URL:-} ]] && ! pg_is_local_url "$AIMC_DATABASE_URL"; then
    external_db=1
    if [[ -n $test_url ]] && pg_is_local_url "$test_url"; then
      test_url=""
    fi
  fi
  if [[ -n ${AIMC_VAULT_ADDR:-} ]] && ! bao_is_local_addr "$AIMC_VAULT_ADDR"; then
    external_vault=1
    [[ -n ${AIMC_VAULT_TOKEN:-} ]] || die "AIMC_VAULT_ADDR is set, so AIMC_VAULT_TOKEN must be too"
  fi

  bao_ensure_binary
  if ((external_db)); then
    log "PostgreSQL: using AIMC_DATABASE_URL from the environment (no local cluster)"
    ENV_VALUES[AIMC_DATABASE_URL]=$AIMC_DATABASE_URL
    ENV_VALUES[AIMC_TEST_DATABASE_URL]=${test_url:-$AIMC_DATABASE_URL}
  else
    pg_up
    ENV_VALUES[AIMC_DATABASE_URL]=$(pg_url "$PG_PORT" aimc)
    ENV_VALUES[AIMC_TEST_DATABASE_URL]=$(pg_url "$PG_PORT" postgres)
  fi

  if ((external_vault)); then
    log "OpenBao: using AIMC_VAULT_ADDR from the environment (no local server)"
    ENV_VALUES[AIMC_VAULT_ADDR]=$AIMC_VAULT_ADDR
    ENV_VALUES[AIMC_VAULT_TOKEN]=$AIMC_VAULT_TOKEN
  else
    bao_up
    ENV_VALUES[AIMC_VAULT_ADDR]="http://127.0.0.1:$BAO_PORT"
    ENV_VALUES[AIMC_VAULT_TOKEN]=$BAO_LOCAL_TOKEN
  fi

  # Kept across runs and resets so development tokens minted earlier stay valid.
  ensure_secret_file "$JWT_SECRET_FILE" jwt_new_secret
  ENV_VALUES[AIMC_JWT_HS256_SECRET]=$(<"$JWT_SECRET_FILE")
  ENV_VALUES[AIMC_JWT_ISSUER]=aimc
  ENV_VALUES[AIMC_JWT_AUDIENCE]=aimc

  write_env_file
  printf 'Services are up. Environment: %s\n  load it with: source .local/env\n' "$AIMC_ENV_FILE"
}

services_down() {
  pg_down
  bao_down
}

services_reset() {
  services_down
  pg_delete_files
  bao_delete_files
  services_up
}
