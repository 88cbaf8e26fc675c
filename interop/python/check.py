#!/usr/bin/env python3
"""kafka-python interoperability check against the franz broker.

Usage: check.py <first|second> <bootstrap> <topic> <group>

first:  metadata lists one broker; create <topic> with 3 partitions (admin API);
        produce first-0..first-99 (keys k0..k99); consume them all in <group>
        from earliest; commit; close (leave the group).
second: produce second-0..second-49; consume in <group> again, which must resume
        from the committed offsets (only the second-* values); commit; close.
Exits 0 on success, 1 with a one-line reason on stderr otherwise.
"""

import os
import signal
import sys
import time

# Run under interop/.venv (where interop/install.sh puts kafka-python) when started another way.
VENV = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".venv"))
VENV_PYTHON = os.path.join(VENV, "bin", "python")
if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != VENV:
    os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])

try:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic
except ImportError as missing:
    sys.exit(f"FAIL kafka-python: cannot import kafka-python ({missing}); run interop/install.sh")

OVERALL_TIMEOUT_S = 55
REQUEST_TIMEOUT_MS = 10_000
CONSUME_TIMEOUT_S = 30
PARTITIONS = 3


class CheckFailed(Exception):
    pass


class step:
    """Labels any error raised inside it with the step that was running."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, _tb):
        if exc is None or isinstance(exc, CheckFailed):
            return False
        raise CheckFailed(f"{self.name}: {exc_type.__name__}: {exc}") from exc


def on_alarm(_signum, _frame):
    raise CheckFailed(f"overall timeout of {OVERALL_TIMEOUT_S}s exceeded")


def check_cluster(bootstrap, topic, create):
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="interop-python-admin",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        with step("describe_cluster (Metadata, all topics)"):
            cluster = admin.describe_cluster()
        brokers = cluster.get("brokers", [])
        if len(brokers) != 1:
            raise CheckFailed(f"expected exactly 1 broker in metadata, got {len(brokers)}: {brokers}")
        if create:
            with step(f"create_topics {topic}"):
                result = admin.create_topics(
                    [NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)],
                    timeout_ms=REQUEST_TIMEOUT_MS,
                )
            # kafka-python raises on a topic error itself; double-check anyway.
            for name, code, *rest in getattr(result, "topic_errors", []) or []:
                if code != 0:
                    raise CheckFailed(f"CreateTopics {name}: error code {code} {rest}")
        with step(f"describe_topics {topic} (Metadata)"):
            described = admin.describe_topics([topic])
        if len(described) != 1 or described[0].get("error_code", 0) != 0:
            raise CheckFailed(f"metadata for topic {topic}: {described}")
        partitions = len(described[0].get("partitions", []))
        if partitions != PARTITIONS:
            raise CheckFailed(f"topic {topic} has {partitions} partitions in metadata, expected {PARTITIONS}")
    finally:
        admin.close()


def produce(bootstrap, topic, prefix, count):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="interop-python-producer",
        acks="all",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        max_block_ms=REQUEST_TIMEOUT_MS,
    )
    try:
        futures = [
            producer.send(topic, key=f"k{i}".encode(), value=f"{prefix}-{i}".encode())
            for i in range(count)
        ]
        producer.flush(timeout=REQUEST_TIMEOUT_MS / 1000)
        for i, future in enumerate(futures):
            try:
                future.get(timeout=REQUEST_TIMEOUT_MS / 1000)
            except Exception as exc:  # noqa: BLE001 - report any client error
                raise CheckFailed(f"produce {prefix}-{i} not acked: {exc!r}") from exc
    finally:
        producer.close(timeout=5)


def consume(bootstrap, topic, group, expected):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="interop-python-consumer",
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS + 1_000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
    )
    seen = set()
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        while seen != expected:
            if time.monotonic() > deadline:
                missing = sorted(expected - seen)
                raise CheckFailed(
                    f"consumed {len(seen)}/{len(expected)} expected values in {CONSUME_TIMEOUT_S}s; "
                    f"missing e.g. {missing[:5]}"
                )
            batches = consumer.poll(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    value = record.value.decode()
                    if value not in expected:
                        raise CheckFailed(
                            f"unexpected value {value!r} at {tp.topic}/{tp.partition}@{record.offset}"
                        )
                    if value in seen:
                        raise CheckFailed(
                            f"duplicate value {value!r} at {tp.topic}/{tp.partition}@{record.offset}"
                        )
                    seen.add(value)
        consumer.commit()  # synchronous
    finally:
        consumer.close(autocommit=False)  # sends LeaveGroup


def main(argv):
    if len(argv) != 5 or argv[1] not in ("first", "second"):
        print(f"usage: {argv[0]} <first|second> <bootstrap> <topic> <group>", file=sys.stderr)
        return 2
    phase, bootstrap, topic, group = argv[1:]
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_TIMEOUT_S)
    try:
        if phase == "first":
            check_cluster(bootstrap, topic, create=True)
            prefix, count = "first", 100
        else:
            prefix, count = "second", 50
        with step(f"produce {prefix}-0..{count - 1}"):
            produce(bootstrap, topic, prefix, count)
        with step(f"consume in group {group}"):
            consume(bootstrap, topic, group, {f"{prefix}-{i}" for i in range(count)})
    except CheckFailed as exc:
        print(f"FAIL kafka-python {phase}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - any client error fails the check
        print(f"FAIL kafka-python {phase}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
    print(f"OK kafka-python {phase}: {count} records produced and consumed in group {group}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
