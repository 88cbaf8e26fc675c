#!/usr/bin/env bash
# Install promtool (Debian's `prometheus` package), which the integration tests use to check franz's /metrics.
# Idempotent: an existing promtool is left alone.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool: found $(promtool --version 2>&1 | head -n1)"
    exit 0
fi

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

export DEBIAN_FRONTEND=noninteractive
if ! sudo_if_needed apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1; then
    sudo_if_needed apt-get update >/dev/null
    sudo_if_needed apt-get install -y --no-install-recommends prometheus >/dev/null
fi
# The package starts a Prometheus server on systemd machines; franz's tests need only the promtool binary.
echo "promtool: installed $(promtool --version 2>&1 | head -n1) from apt"
