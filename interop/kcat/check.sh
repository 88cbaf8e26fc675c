#!/usr/bin/env bash
# kcat (librdkafka) interoperability check against the franz broker.
#
# Usage: check.sh <first|second> <bootstrap> <topic> <group>
#
# first:  `kcat -L` lists exactly one broker; produce first-0..first-99 (keys k0..k99,
#         `-P -K:`), which auto-creates the topic; `-L -t` then shows it; consume in
#         the balanced consumer group (`-G`, earliest) until the end of every assigned
#         partition (`-e`), closing the consumer commits the offsets and leaves the group.
# second: produce second-0..second-49; consume in the same group: it must resume from
#         the committed offsets, so exactly the second-* values arrive.
# Exits 0 on success, 1 with a one-line reason on stderr otherwise.
set -euo pipefail

if [ $# -ne 4 ] || { [ "$1" != first ] && [ "$1" != second ]; }; then
    echo "usage: $0 <first|second> <bootstrap> <topic> <group>" >&2
    exit 2
fi
phase=$1 bootstrap=$2 topic=$3 group=$4

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
    echo "FAIL kcat $phase: $*" >&2
    exit 1
}

# The last meaningful line kcat wrote to stderr, for the failure reason.
kcat_said() {
    grep -v '^\s*$' "$work/stderr" 2>/dev/null | tail -n1 | tr -d '\r' || true
}

# Every kcat call runs under `timeout` so a misbehaving broker cannot hang the check.
# -m bounds the metadata wait; message.timeout.ms bounds each produce.
kc() {
    local limit=$1
    shift
    timeout --kill-after=5 "$limit" kcat -b "$bootstrap" -m 10 "$@" 2>"$work/stderr"
}

# (a) cluster metadata: exactly one broker.
if [ "$phase" = first ]; then
    kc 20 -L >"$work/metadata" || fail "kcat -L failed: $(kcat_said)"
    brokers=$(sed -n 's/^ \([0-9][0-9]*\) brokers:$/\1/p' "$work/metadata")
    [ "$brokers" = 1 ] || fail "expected exactly 1 broker in metadata, got '${brokers:-none}'"
fi

# (c) produce, acks=all, waiting for every delivery report (kcat exits 1 if any failed).
if [ "$phase" = first ]; then prefix=first count=100; else prefix=second count=50; fi
for ((i = 0; i < count; i++)); do printf 'k%d:%s-%d\n' "$i" "$prefix" "$i"; done >"$work/input"
kc 30 -P -t "$topic" -K : -X acks=all -X message.timeout.ms=15000 -X allow.auto.create.topics=true \
    <"$work/input" || fail "kcat -P failed: $(kcat_said)"

# (b) the topic exists after the auto-creating produce.
if [ "$phase" = first ]; then
    kc 20 -L -t "$topic" >"$work/metadata" || fail "kcat -L -t $topic failed: $(kcat_said)"
    grep -q "^  topic \"$topic\" with [1-9][0-9]* partitions:" "$work/metadata" ||
        fail "topic $topic not in metadata after producing: $(grep topic "$work/metadata" | head -n1)"
fi

# (d) balanced consumer: no -o (it would override the committed offsets), so it starts
# at the committed offset or, without one, at the earliest; -e stops once every assigned
# partition is at its end; closing commits the consumed offsets and leaves the group.
kc 45 -G "$group" -X auto.offset.reset=earliest -X enable.auto.commit=true -e -q -f '%s\n' "$topic" \
    >"$work/consumed" || fail "kcat -G $group failed (exit $?): $(kcat_said)"

for ((i = 0; i < count; i++)); do echo "$prefix-$i"; done | sort >"$work/expected"
sort "$work/consumed" >"$work/got"
if ! cmp -s "$work/expected" "$work/got"; then
    missing=$(comm -23 "$work/expected" "$work/got" | wc -l)
    extra=$(comm -13 "$work/expected" "$work/got" | head -n3 | paste -sd, -)
    fail "consumed $(wc -l <"$work/consumed") values, expected the $count $prefix-* values: $missing missing, unexpected/duplicate: ${extra:-none}"
fi

echo "OK kcat $phase: $count records produced and consumed in group $group"
