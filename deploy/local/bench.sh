# shellcheck shell=bash
# `./dev bench`: the services as `./dev run` starts them, release builds, then aimc-bench.

# wrk drives HTTP, pgbench (shipped with Debian's postgresql server package) drives
# PostgreSQL, and the chart needs a font. The test suite's smoke run of the benchmark needs
# them too, so `./dev test` calls this as well.
ensure_bench_tools() {
  local -a missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v pgbench >/dev/null 2>&1 || missing+=(postgresql)
  [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
  if ((${#missing[@]} > 0)); then
    apt_install "${missing[@]}"
  fi
}

dev_bench() {
  local target=${CARGO_TARGET_DIR:-$AIMC_ROOT/target}
  services_up
  load_env
  ensure_bench_tools
  run cargo build --release -p aimc-server -p aimc-bench
  # Writes bench/results/ (aimc-bench's default, relative to the repository root ./dev runs in).
  run "$target/release/aimc-bench" --aimc "$target/release/aimc" "$@"
}
