#!/usr/bin/env bash
# Makes sure a Docker engine answers here, for `cargo xtask containers` (franz's container brokers against a real
# engine). Where none answers and this user may (root), it installs Debian's docker.io and busybox-static and
# starts dockerd in the background (log: $FRANZ_DOCKERD_LOG, default /tmp/franz-dockerd.log), which it leaves
# running. Exit 0: an engine answers. Exit 3: none can be had here; the one line on stderr says why.
set -euo pipefail

log=${FRANZ_DOCKERD_LOG:-/tmp/franz-dockerd.log}
cannot() { echo "$*" >&2; exit 3; }
answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
root() { [ "$(id -u)" -eq 0 ]; }
# Whether process $1 runs (a zombie, killed but not yet reaped, does not).
alive() { local state; state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state#Z}" = "$state" ]; }

static_busybox() { [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; }

missing=()
answers || command -v dockerd >/dev/null || missing+=(docker.io)
# The stand-in images carry busybox for their entrypoint script; the static build needs no libraries there.
static_busybox || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  root || cannot "${missing[*]} missing and this user is not root, so they cannot be installed here"
  command -v apt-get >/dev/null || cannot "${missing[*]} missing and there is no apt-get to install them"
  echo "docker/engine.sh: installing ${missing[*]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null \
    || cannot "apt-get install ${missing[*]} failed"
fi

answers && exit 0
root || cannot "no Docker engine answers and this user is not root, so none can be started here"
# A dockerd killed with its machine leaves its pid files behind, and a new one refuses to start while they exist.
for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! alive "$(cat "$pidfile")"; then rm -f "$pidfile"; fi
done
echo "docker/engine.sh: starting dockerd (log: $log)" >&2
setsid nohup dockerd >"$log" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 300); do
  answers && exit 0
  alive "$pid" || cannot "dockerd exited at start: $(tail -n 1 "$log")"
  sleep 0.1
done
cannot "dockerd did not answer within 30 s; see $log"
