#!/usr/bin/env bash
# Provision the browser the dashboard test drives: a Chromium on PATH and its driver at
# /usr/bin/chromedriver (Debian's chromium + chromium-driver). When they are missing they are
# installed with apt-get: as root directly (CI: a fresh machine as root), otherwise through a
# sudo that needs no password (GitHub's runners are not root). When that cannot be done the
# test skips, saying why; with TXSTATS_REQUIRE_BROWSER=1 (the GitHub workflow) this script
# fails instead, so that a green run means the browser test ran. Never downloads a browser from
# anywhere else.
set -uo pipefail

have_browser() {
  { command -v chromium || command -v chromium-browser; } >/dev/null && [[ -x /usr/bin/chromedriver ]]
}

missing() { # missing <why>: a skip, or a failure when the browser is required
  if [[ "${TXSTATS_REQUIRE_BROWSER:-}" == 1 ]]; then
    echo "[browser] error: $1 (TXSTATS_REQUIRE_BROWSER=1: the browser test must run)" >&2
    exit 1
  fi
  echo "[browser] $1: the browser test will skip" >&2
  exit 0
}

have_browser && exit 0
command -v apt-get >/dev/null || missing "chromium/chromium-driver are missing and there is no apt-get"
if [[ $EUID -eq 0 ]]; then
  as_root=()
elif sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  missing "chromium/chromium-driver are missing, and apt-get needs root or a sudo without password"
fi
echo "[browser] installing Debian's chromium and chromium-driver with ${as_root[*]:+sudo }apt-get (browser test)"
apt_log="$(mktemp)"
trap 'rm -f "$apt_log"' EXIT
if ! { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
  >"$apt_log" 2>&1; then
  tail -n 5 "$apt_log" >&2
  missing "apt-get could not install chromium and chromium-driver"
fi
have_browser || missing "chromium-driver is installed but /usr/bin/chromedriver is not there"
exit 0
