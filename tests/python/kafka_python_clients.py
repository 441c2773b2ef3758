"""Strata driven by kafka-python, an independent pure-Python Kafka client (no librdkafka).

Run by `.ci/python-clients` against a broker it starts; the bootstrap address is the first
argument. Every check is an assert: the script exits non-zero on the first failure.

Covers: plain produce / consume in a group with committed offsets, and transactions
(abort, commit with send_offsets_to_transaction, fencing by a second instance, and what
read_committed / read_uncommitted consumers see).
"""

import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

BOOTSTRAP = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092"
PATIENCE_S = 30


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


def read_all(topic, isolation):
    """Every value of `topic` from the start, as a consumer with `isolation` sees it."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        isolation_level=isolation,
        consumer_timeout_ms=3000,
    )
    values = [m.value for m in consumer]
    consumer.close()
    return values


def poll_until(consumer, count):
    """At least `count` records from `consumer`, or fails after PATIENCE_S."""
    records = []
    deadline = time.time() + PATIENCE_S
    while len(records) < count and time.time() < deadline:
        for batch in consumer.poll(500).values():
            records.extend(batch)
    assert len(records) >= count, f"consumed {len(records)} of {count}"
    return records


def main():
    source, sink = unique("py-src"), unique("py-dst")
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(source, 3, 1), NewTopic(sink, 3, 1)])
    admin.close()

    plain = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    for i in range(30):
        plain.send(source, key=f"k{i}".encode(), value=f"v{i}".encode())
    plain.flush()
    plain.close()

    txid = unique("py-txn")
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=txid)
    producer.init_transactions()

    # An aborted transaction: its records are in the log but hidden from read_committed.
    producer.begin_transaction()
    for i in range(10):
        producer.send(sink, value=f"aborted-{i}".encode())
    producer.flush()
    producer.abort_transaction()

    # Consume-transform-produce: the group's offsets move only with the commit.
    group = unique("py-group")
    consumer = KafkaConsumer(
        source,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    inputs = poll_until(consumer, 30)
    assert len(inputs) == 30, len(inputs)
    producer.begin_transaction()
    offsets = {}
    for m in inputs:
        producer.send(sink, value=b"ok-" + m.value)
        tp = TopicPartition(m.topic, m.partition)
        done = offsets.get(tp, OffsetAndMetadata(0, "", -1)).offset
        offsets[tp] = OffsetAndMetadata(max(done, m.offset + 1), "", -1)
    producer.send_offsets_to_transaction(offsets, group)
    # A read_uncommitted member's OffsetFetch does not wait for pending transactional
    # offsets (require_stable is off): it still sees none committed.
    observer = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=group, enable_auto_commit=False
    )
    for p in range(3):
        assert observer.committed(TopicPartition(source, p)) is None, "offsets visible before commit"
    observer.close()
    producer.commit_transaction()
    for tp, om in offsets.items():
        assert consumer.committed(tp) == om.offset, (tp, consumer.committed(tp), om.offset)
    consumer.close()

    committed = read_all(sink, "read_committed")
    uncommitted = read_all(sink, "read_uncommitted")
    assert sorted(committed) == sorted(b"ok-" + m.value for m in inputs), committed
    assert len(uncommitted) == 40, len(uncommitted)
    assert sum(v.startswith(b"aborted-") for v in uncommitted) == 10

    # A second instance with the same transactional.id fences the first.
    producer.begin_transaction()
    producer.send(sink, value=b"open-when-fenced").get(timeout=PATIENCE_S)
    successor = KafkaProducer(bootstrap_servers=BOOTSTRAP, transactional_id=txid)
    successor.init_transactions()
    fenced = False
    try:
        producer.commit_transaction()
    except KafkaError as e:
        fenced = True
        print(f"first instance fenced as expected: {type(e).__name__}")
    assert fenced, "the first instance committed after being fenced"
    successor.begin_transaction()
    successor.send(sink, value=b"successor")
    successor.commit_transaction()
    successor.close()
    committed = read_all(sink, "read_committed")
    assert b"open-when-fenced" not in committed, "a fenced transaction became visible"
    assert b"successor" in committed
    print(f"kafka-python {__import__('kafka').__version__}: all checks passed")


if __name__ == "__main__":
    main()
