#!/usr/bin/env bash
# Provision the browser the dashboard test drives: Debian's chromium + chromium-driver.
# Installed with apt-get when missing and we are root (CI: a fresh machine as root); otherwise
# the test skips, saying why. Never downloads a browser from anywhere else.
set -uo pipefail

if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "[browser] chromium/chromium-driver missing and cannot apt-get them: the browser test will skip" >&2
  exit 0
fi
echo "[browser] installing Debian's chromium and chromium-driver with apt-get (browser test)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1; then
  echo "[browser] apt-get could not install chromium: the browser test will skip" >&2
fi
exit 0
