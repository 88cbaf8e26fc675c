#!/bin/sh
# franz's stand-in for the Redpanda and Kafka images, built by `cargo xtask containers` (xtask/src/containers.rs).
#
# It runs franz's own embedded broker (`franz broker`) inside the container, configured from exactly what franz
# passes to the real image: for redpanda the arguments `redpanda start --mode dev-container --smp 1 --kafka-addr
# PLAINTEXT://ADDR --advertise-kafka-addr PLAINTEXT://HOST:PORT`, for kafka the variables KAFKA_LISTENERS and
# KAFKA_ADVERTISED_LISTENERS. Once the broker is ready it prints the real image's ready line, the one franz waits
# for. Anything it does not expect stops it with a message, so a change in what franz passes fails the tests.
# With STANDIN_NEVER_READY set (an image tag of its own), it never gets ready: for interrupting a start-up.
set -eu

kind="$1"
shift
fail() { echo "stand-in $kind: $*" >&2; exit 2; }
# The PLAINTEXT://ADDR entry of a comma-separated listener list, without its scheme.
plaintext() { echo "$1" | tr ',' '\n' | sed -n 's#^PLAINTEXT://##p'; }

case "$kind" in
  redpanda)
    ready="Successfully started Redpanda!"
    [ "${1:-}" = redpanda ] && [ "${2:-}" = start ] || fail "expected 'redpanda start ...', got: $*"
    shift 2
    listen=""
    advertise=""
    while [ $# -gt 0 ]; do
      [ $# -ge 2 ] || fail "argument $1 has no value"
      case "$1" in
        --kafka-addr) listen=$(plaintext "$2") ;;
        --advertise-kafka-addr) advertise=$(plaintext "$2") ;;
        --mode) [ "$2" = dev-container ] || fail "--mode $2 is not dev-container" ;;
        --smp) ;;
        *) fail "unknown argument $1" ;;
      esac
      shift 2
    done
    ;;
  kafka)
    ready="[KafkaRaftServer nodeId=1] Kafka Server started"
    [ $# -eq 0 ] || fail "expected no arguments, got: $*"
    [ "${KAFKA_PROCESS_ROLES:-}" = "broker,controller" ] || fail "KAFKA_PROCESS_ROLES is not broker,controller"
    listen=$(plaintext "${KAFKA_LISTENERS:-}")
    advertise=$(plaintext "${KAFKA_ADVERTISED_LISTENERS:-}")
    ;;
  *) fail "unknown kind" ;;
esac
[ -n "$listen" ] || fail "no PLAINTEXT listener was given"
[ -n "$advertise" ] || fail "no PLAINTEXT advertised listener was given"

if [ -n "${STANDIN_NEVER_READY:-}" ]; then
  echo "stand-in $kind: never ready (STANDIN_NEVER_READY)"
  exec tail -f /dev/null
fi

/franz broker --listen "$listen" --advertise "$advertise" --ephemeral 2>&1 | while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    "ready "*) printf '%s\n' "$ready" ;;
  esac
done
