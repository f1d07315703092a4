#!/usr/bin/env bash
# Debian's redis-server for the Redis-backed store tests (each test starts its own on a free
# port in a temporary folder; nothing listens on the default port).
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "[redis] installing Debian redis-server ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
    || echo "[redis] could not install redis-server; the Redis tests will be skipped" >&2
else
  echo "[redis] redis-server missing and not root; the Redis tests will be skipped" >&2
fi
