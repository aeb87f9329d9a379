#!/usr/bin/env bash
# Installs Debian's chromium (headless browser for tests/test_report.py and scripts/check_report.sh)
# when it is missing and we may use apt (root). About 1 minute; a no-op when chromium is there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_chromium: not root or no apt-get; install chromium yourself (the report test is skipped)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
chromium --version
