#!/usr/bin/env bash
# Headless Chromium and its driver from Debian's packages, for the UI tests
# (tests/deployment/test_ui.py). Root; idempotent. Browser builds of a test tool's own
# (playwright install, puppeteer) cannot be downloaded here: Debian's are the ones to use.
set -euo pipefail
log() { printf '[browser-install] %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "ERROR: must run as root (apt-get)"; exit 1; }
missing=()
for p in chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
log "$(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: not runnable')"
