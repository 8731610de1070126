# shellcheck shell=bash
# The tools of the browser tests (tests/e2e/browser.rs runs tests/browser/settings.mjs against
# the settings pages): Debian's chromium, driven headless by playwright-core, and axe-core, both
# pinned in tests/browser/package-lock.json. `./dev test` calls ensure_browser_tools; it
# reinstalls only what is missing or whose pinned list changed, so a second call costs a
# checksum. Uses npm_ci_pinned from clients.sh.

BROWSER_TESTS_DIR="$AIMC_ROOT/tests/browser"
BROWSER_DEFAULT_CHROMIUM=/usr/bin/chromium

# Debian's chromium, unless AIMC_CHROMIUM names another build (which is then not installed).
ensure_browser_chromium() {
  local chromium=${AIMC_CHROMIUM:-$BROWSER_DEFAULT_CHROMIUM}
  [[ -x $chromium ]] && return 0
  if [[ $chromium != "$BROWSER_DEFAULT_CHROMIUM" ]]; then
    die "AIMC_CHROMIUM=$chromium is not an executable; unset it to use Debian's chromium"
  fi
  apt_install chromium
  [[ -x $chromium ]] || die "installing Debian's chromium did not provide $chromium"
}

ensure_browser_tools() {
  ensure_browser_chromium
  npm_ci_pinned "$BROWSER_TESTS_DIR" "browser tests"
  # Where tests/e2e/browser.rs looks (these are also its defaults).
  export AIMC_CHROMIUM="${AIMC_CHROMIUM:-$BROWSER_DEFAULT_CHROMIUM}"
  export AIMC_BROWSER_NODE_MODULES="$BROWSER_TESTS_DIR/node_modules"
}
