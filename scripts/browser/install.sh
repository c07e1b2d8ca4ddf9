#!/usr/bin/env bash
# Headless Chromium and its driver from Debian's packages, for the UI tests
# (tests/deployment/test_ui.py). Root; idempotent. Browser builds of a test tool's own
# (playwright install, puppeteer) cannot be downloaded here: Debian's are the ones to use.
set -euo pipefail
log() { printf '[browser-install] %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "ERROR: must run as root (apt-get)"; exit 1; }
# shellcheck source=../packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/../packages.sh"
ensure_packages chromium chromium-driver
log "$(/usr/bin/chromium --version 2>/dev/null || echo 'chromium: not runnable')"
