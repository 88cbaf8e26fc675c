#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver, which the web desk's browser tests drive over WebDriver.
# Idempotent: installed ones are left alone.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium: found $(chromium --version 2>/dev/null | head -n1), $(chromedriver --version | head -n1)"
    exit 0
fi

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

export DEBIAN_FRONTEND=noninteractive
if ! sudo_if_needed apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    sudo_if_needed apt-get update >/dev/null
    sudo_if_needed apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null
fi
echo "chromium: installed $(chromium --version 2>/dev/null | head -n1), $(chromedriver --version | head -n1) from apt"
