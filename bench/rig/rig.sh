#!/usr/bin/env bash
# An A/B rig for one workload at a time: alternates builds of aimc on one database under wrk and
# reads, per request, the CPU aimc, PostgreSQL and OpenBao spent and PostgreSQL's transactions.
# A developer tool (CI does not run it); see bench/rig/README.md.
#
#   rig.sh fresh                      recreate the rig's database
#   rig.sh serve BINARY [ENV=VAL...]  start aimc on RIG_PORT (stops the one running)
#   rig.sh stop
#   rig.sh measure LUA [SECONDS]      one measurement against the running server
#   rig.sh ab ROUNDS SECONDS LUA LABEL=BINARY[+ENV=VAL...]...
#                                     rounds of every variant in turn, each after a 3 s warm-up
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
[[ -f $root/.local/env ]] || { echo "run ./dev services up first" >&2; exit 2; }
# shellcheck source=/dev/null
source "$root/.local/env"
export RIG_DIR=${RIG_DIR:-/tmp/aimc-rig}
RIG_PORT=${RIG_PORT:-18080}
mkdir -p "$RIG_DIR"
server_url=${AIMC_DATABASE_URL%/*}
rig_db="$server_url/aimc_rig"
admin_db="$server_url/postgres"

listener() { ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1; }
# CPU ticks of a process and its children.
ticks() {
  local total=0 pid
  for pid in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
transactions() {
  psql -XAt "$rig_db" -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'aimc_rig'"
}

stop() {
  if [[ -f $RIG_DIR/aimc.pid ]]; then
    kill -9 "$(cat "$RIG_DIR/aimc.pid")" 2>/dev/null || true
    rm -f "$RIG_DIR/aimc.pid"
  fi
  for _ in $(seq 50); do
    [[ -z $(listener "$RIG_PORT") ]] && return 0
    sleep 0.2
  done
  echo "port $RIG_PORT is taken by pid $(listener "$RIG_PORT"), not a server this rig started" >&2
  exit 1
}

serve() {
  local binary=$1
  shift
  stop
  # Only what is set here counts, as in aimc-bench.
  env -i PATH="$PATH" HOME="$HOME" "$@" \
    AIMC_DATABASE_URL="$rig_db" AIMC_KEYRING=vault AIMC_VAULT_ADDR="$AIMC_VAULT_ADDR" \
    AIMC_VAULT_TOKEN="$AIMC_VAULT_TOKEN" AIMC_VAULT_KEY_PREFIX=rig \
    AIMC_JWT_HS256_SECRET=rig-secret-rig-secret-rig-secret-0123 AIMC_JWT_ISSUER=aimc \
    AIMC_JWT_AUDIENCE=aimc AIMC_LOG=warn AIMC_LISTEN="127.0.0.1:$RIG_PORT" \
    setsid "$binary" serve >"$RIG_DIR/aimc.log" 2>&1 &
  echo $! >"$RIG_DIR/aimc.pid"
  disown
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$RIG_PORT/readyz" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "aimc did not become ready; see $RIG_DIR/aimc.log" >&2
  exit 1
}

measure() {
  local lua=$1 seconds=${2:-10}
  local aimc postgres bao
  aimc=$(cat "$RIG_DIR/aimc.pid")
  postgres=${AIMC_DATABASE_URL##*:}
  postgres=$(listener "${postgres%%/*}")
  bao=$(listener "${AIMC_VAULT_ADDR##*:}")
  local a0 p0 b0 x0 a1 p1 b1 x1 out
  a0=$(ticks "$aimc"); p0=$(ticks "$postgres"); b0=$(ticks "$bao"); x0=$(transactions)
  out=$(wrk -t2 -c32 -d"${seconds}s" -s "$lua" "http://127.0.0.1:$RIG_PORT" 2>"$RIG_DIR/wrk.err")
  a1=$(ticks "$aimc"); p1=$(ticks "$postgres"); b1=$(ticks "$bao"); x1=$(transactions)
  python3 - "$out" "$seconds" "$((a1 - a0))" "$((p1 - p0))" "$((b1 - b0))" "$((x1 - x0))" <<'PY'
import os, re, sys
out, seconds, aimc, postgres, bao, xact = sys.argv[1], *map(float, sys.argv[2:])
rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
n, tick = rps * seconds, 1e6 / os.sysconf("SC_CLK_TCK")
print(f"req/s {rps:,.0f}  CPU per request: aimc {aimc * tick / n:.0f} µs, PostgreSQL "
      f"{postgres * tick / n:.0f} µs, OpenBao {bao * tick / n:.0f} µs; "
      f"transactions per 100 requests {xact * 100 / n:.0f}"
      + (f"  ({errors.group(1)} errors, see wrk.err)" if errors else ""))
PY
}

case "${1:-}" in
fresh)
  stop
  psql -Xq "$admin_db" -c "DROP DATABASE IF EXISTS aimc_rig WITH (FORCE)" -c "CREATE DATABASE aimc_rig"
  ;;
serve) shift; serve "$@" ;;
stop) stop ;;
measure) shift; measure "$@" ;;
ab)
  rounds=$2 seconds=$3 lua=$4
  shift 4
  for round in $(seq "$rounds"); do
    for variant in "$@"; do
      label=${variant%%=*}
      IFS=+ read -r -a spec <<<"${variant#*=}"
      serve "${spec[@]:0:1}" "${spec[@]:1}"
      wrk -t2 -c32 -d3s -s "$lua" "http://127.0.0.1:$RIG_PORT" >/dev/null 2>&1
      echo "round $round $label: $(measure "$lua" "$seconds")"
    done
  done
  stop
  ;;
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
