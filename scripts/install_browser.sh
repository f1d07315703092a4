#!/usr/bin/env bash
# Debian's Chromium for the end-to-end browser test (Playwright drives it; no browser download).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[browser] installing Debian chromium ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[browser] could not install chromium; browser tests will be skipped" >&2
else
  echo "[browser] chromium missing and not root; browser tests will be skipped" >&2
fi
