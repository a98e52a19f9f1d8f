#!/usr/bin/env bash
# The report's browser test needs Debian's Chromium and its driver: installed here when
# missing (as the stack installs PostgreSQL), never skipped.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "ensure_browser: chromium and chromedriver are missing (fix: apt-get install -y chromium chromium-driver as root)" >&2
  exit 2
fi
echo "ensure_browser: installing chromium and chromium-driver (Debian packages) ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
  apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null
}
