#!/usr/bin/env bash
# A real browser for the console tests: Debian's Chromium and its WebDriver server.
# Idempotent: installs only when either is missing.
set -eu
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
