# shellcheck shell=bash
# `./dev run` and `./dev test`: the services, then cargo.

load_env() {
  # shellcheck source=/dev/null
  source "$AIMC_ENV_FILE"
}

# Checked without running cargo, which would wait on a build lock if another
# cargo is busy in this workspace.
have_nextest() {
  command -v cargo-nextest >/dev/null 2>&1 ||
    [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/cargo-nextest ]]
}

format_duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# Each test creates its own database; clear out those of earlier runs so they do not pile up.
drop_test_databases() {
  command -v psql >/dev/null 2>&1 || return 0
  # Only in our own cluster: on a shared Postgres they may belong to someone else's run.
  pg_is_local_url "$AIMC_TEST_DATABASE_URL" || return 0
  local db
  while read -r db; do
    [[ $db =~ ^aimc_test_[0-9a-f]+$ ]] || continue
    psql "$AIMC_TEST_DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1 || true
  done < <(psql "$AIMC_TEST_DATABASE_URL" -qAtc "SELECT datname FROM pg_database WHERE datname LIKE 'aimc\_test\_%'" 2>/dev/null || true)
}

dev_test() {
  local started status=0
  local -a runner
  services_up
  load_env
  ensure_bench_tools
  ensure_client_tools
  ensure_browser_tools
  ensure_deploy_tools
  if [[ ${CI:-} == true ]]; then
    # A CI clone is thrown away after the run; servers left behind would hold ports and CPU.
    trap 'services_down >/dev/null 2>&1 || true' EXIT
  fi
  if have_nextest; then
    runner=(cargo nextest run --workspace --no-fail-fast)
  else
    runner=(cargo test --workspace --no-fail-fast)
  fi
  drop_test_databases
  started=$SECONDS
  log "running the suite (build included); timing follows the runner's summary only on failure"
  run "${runner[@]}" "$@" || status=$?
  # Nothing after a passing runner's summary: CI reads the closing lines.
  if ((status != 0)); then
    log "build + test: $(format_duration $((SECONDS - started))) (exit status $status)"
  fi
  exit "$status"
}

dev_run() {
  local listen=${AIMC_LISTEN:-127.0.0.1:8080} host port bin token
  bin=${CARGO_TARGET_DIR:-$AIMC_ROOT/target}/release/aimc
  services_up
  load_env
  run cargo build --release -p aimc-server
  if [[ ${DEV_DRY_RUN:-} == 1 ]]; then
    token='<token>'
  else
    [[ -x $bin ]] || die "cargo build did not produce $bin"
    token=$("$bin" token --sub dev --workspace dev --role owner --scope keys:ciphertext)
  fi
  host=${listen%:*}
  port=${listen##*:}
  # A wildcard listen address is not something a browser can open.
  case $host in
  0.0.0.0 | "" | "[::]") host=127.0.0.1 ;;
  esac
  cat <<BANNER

  aimc (development)
    Settings pages: http://$host:$port/settings ("Use a development token" signs in)
    Swagger UI: http://$host:$port/docs
    Token (sub dev, workspace dev, owner, keys:ciphertext):
      $token
    Try:
      curl -s -H 'Authorization: Bearer $token' http://$host:$port/api/v1/get/ai-model-config

BANNER
  if [[ ${DEV_DRY_RUN:-} == 1 ]]; then
    printf '[dry-run] exec %s serve\n' "$bin" >&2
    return 0
  fi
  # Development mode: the settings pages offer to mint a token; never set in deploy/.
  AIMC_DEV_MODE=true exec "$bin" serve
}
