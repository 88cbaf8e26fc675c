#!/usr/bin/env bash
# Install the third-party Kafka clients the interop checks run against.
# Idempotent: anything already present at the pinned version is left alone.
set -euo pipefail

KAFKA_PYTHON_VERSION=2.3.3

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

kcat_version() {
    kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*\(librdkafka [^ ]*\).*/\1 (\2)/p'
}

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# kcat (Debian package)
if command -v kcat >/dev/null 2>&1; then
    echo "kcat: found $(kcat_version) at $(command -v kcat)"
else
    export DEBIAN_FRONTEND=noninteractive
    if ! sudo_if_needed apt-get install -y kcat >/dev/null 2>&1; then
        sudo_if_needed apt-get update >/dev/null
        sudo_if_needed apt-get install -y kcat >/dev/null
    fi
    echo "kcat: installed $(kcat_version) from apt"
fi

# kafka-python (PyPI, in interop/.venv)
venv="$here/.venv"
if [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kafka-python"))' 2>/dev/null)" = "$KAFKA_PYTHON_VERSION" ]; then
    echo "kafka-python: found $KAFKA_PYTHON_VERSION in $venv"
else
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kafka-python==$KAFKA_PYTHON_VERSION"
    echo "kafka-python: installed $KAFKA_PYTHON_VERSION into $venv"
fi

# kafkajs (npm, version pinned in interop/js/package.json + package-lock.json)
js="$here/js"
if [ -f "$js/node_modules/kafkajs/package.json" ]; then
    echo "kafkajs: found $(node -p "require('$js/node_modules/kafkajs/package.json').version") in $js/node_modules"
else
    npm ci --prefix "$js" --no-audit --no-fund --loglevel=error >/dev/null
    echo "kafkajs: installed $(node -p "require('$js/node_modules/kafkajs/package.json').version") into $js/node_modules"
fi
