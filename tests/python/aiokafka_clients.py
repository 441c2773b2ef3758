"""aiokafka compatibility scenarios against a Strata broker.

Usage: BROKER=127.0.0.1:9092 python aiokafka_clients.py [filter]   (run by .ci/kafkajs-aiokafka)
Prints PASS/FAIL per scenario; exit code = number of failures.
"""

import asyncio
import os
import sys
import time
import traceback
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic, RecordsToDelete
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import (
    KafkaError,
    for_code,
)
from aiokafka.structs import OffsetAndMetadata

BROKER = os.environ.get("BROKER", "127.0.0.1:19300")
RUN = uuid.uuid4().hex[:6]
FILTER = sys.argv[1] if len(sys.argv) > 1 else None
results = []


def T(s):
    return f"aio-{RUN}-{s}"


def eq(a, b, msg):
    if a != b:
        raise AssertionError(f"{msg}: got {a!r} want {b!r}")


def err_name(code):
    return for_code(code).__name__ if code else "NoError"


async def scenario(name, coro_fn):
    if FILTER and FILTER not in name:
        return
    try:
        await asyncio.wait_for(coro_fn(), 60)
        results.append((name, "PASS", ""))
        print(f"PASS {name}", flush=True)
    except BaseException as e:  # noqa: BLE001
        detail = f"{type(e).__name__}: {e}"
        results.append((name, "FAIL", detail))
        print(f"FAIL {name} :: {detail}", flush=True)
        if os.environ.get("TRACE"):
            traceback.print_exc()


async def expect_error(coro, name):
    try:
        await coro
    except BaseException as e:  # noqa: BLE001
        s = f"{type(e).__name__} {e}"
        if name not in s:
            raise AssertionError(f"expected {name}, got {s}") from e
        return e
    raise AssertionError(f"expected {name}, got success")


def topic_errors(resp):
    """error names per topic of a CreateTopics/DeleteTopics/CreatePartitions response"""
    out = {}
    for t in resp.topic_errors if hasattr(resp, "topic_errors") else resp.topic_error_codes:
        out[t[0]] = err_name(t[1])
    return out


async def consume_n(topic, n, isolation="read_uncommitted", wait=15, group=None):
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BROKER,
        group_id=group,
        auto_offset_reset="earliest",
        isolation_level=isolation,
        enable_auto_commit=False,
    )
    await c.start()
    got = []
    try:
        deadline = time.time() + wait
        while len(got) < n and time.time() < deadline:
            batch = await c.getmany(timeout_ms=300)
            for _tp, msgs in batch.items():
                got.extend(msgs)
    finally:
        await c.stop()
    return got


async def main():
    admin = AIOKafkaAdminClient(bootstrap_servers=BROKER)
    await admin.start()

    async def create(name, n=1, configs=None):
        r = await admin.create_topics([NewTopic(name, n, 1, topic_configs=configs or {})])
        eq(topic_errors(r), {name: "NoError"}, "create " + name)

    async def s_create_cfg():
        await create(T("cfg"), 2, {"retention.ms": "3600000", "max.message.bytes": "200000"})
        r = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, T("cfg"))])
        res = r[0].resources[0]
        eq(err_name(res[0]), "NoError", "describe error")
        entries = {e[0]: e[1] for e in res[4]}
        eq(entries.get("retention.ms"), "3600000", "retention.ms")
        eq(entries.get("max.message.bytes"), "200000", "max.message.bytes")

    await scenario("admin create_topics with configs + describe_configs", s_create_cfg)

    async def s_exists():
        r = await admin.create_topics([NewTopic(T("cfg"), 2, 1)])
        eq(topic_errors(r), {T("cfg"): "TopicAlreadyExistsError"}, "exists")

    await scenario("admin create_topics existing -> TOPIC_ALREADY_EXISTS", s_exists)

    async def s_validate_only():
        r = await admin.create_topics([NewTopic(T("vo"), 2, 1)], validate_only=True)
        eq(topic_errors(r), {T("vo"): "NoError"}, "validate only")
        topics = await admin.list_topics()
        assert T("vo") not in topics, "validate_only created the topic"

    await scenario("admin create_topics validate_only", s_validate_only)

    async def s_bad_cfg():
        r = await admin.create_topics([NewTopic(T("badcfg"), 1, 1, topic_configs={"retention.ms": "x"})])
        eq(topic_errors(r), {T("badcfg"): "InvalidConfigurationError"}, "invalid config")
        r = await admin.create_topics([NewTopic(T("badcfg2"), 1, 1, topic_configs={"no.such.config": "1"})])
        eq(topic_errors(r), {T("badcfg2"): "InvalidConfigurationError"}, "unknown config")

    await scenario("admin create_topics invalid config -> INVALID_CONFIG", s_bad_cfg)

    async def s_bad_name():
        r = await admin.create_topics([NewTopic("bad name?", 1, 1)])
        eq(topic_errors(r), {"bad name?": "InvalidTopicError"}, "invalid name")
        r = await admin.create_topics([NewTopic("x" * 250, 1, 1)])
        eq(topic_errors(r), {"x" * 250: "InvalidTopicError"}, "too long")

    await scenario("admin create_topics invalid name -> INVALID_TOPIC_EXCEPTION", s_bad_name)

    async def s_bad_rf():
        r = await admin.create_topics([NewTopic(T("rf3"), 1, 3)])
        eq(topic_errors(r), {T("rf3"): "InvalidReplicationFactorError"}, "rf")
        r = await admin.create_topics([NewTopic(T("p0"), 0, 1)])
        eq(topic_errors(r), {T("p0"): "InvalidPartitionsError"}, "0 partitions")

    await scenario("admin create_topics rf=3 / 0 partitions -> errors", s_bad_rf)

    async def s_alter():
        r = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, T("cfg"), configs={"retention.ms": "7200000"})])
        eq([err_name(x[0]) for x in r[0].resources], ["NoError"], "alter")
        r = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, T("cfg"), configs={"retention.ms": None})])
        eq([(e[0], e[1]) for e in r[0].resources[0][4]], [("retention.ms", "7200000")], "altered")
        r = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, T("cfg"), configs={"retention.ms": "bad"})])
        eq([err_name(x[0]) for x in r[0].resources], ["InvalidConfigurationError"], "invalid alter")
        r = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, T("nosuch"), configs={"retention.ms": "1"})])
        eq([err_name(x[0]) for x in r[0].resources], ["UnknownTopicOrPartitionError"], "unknown topic alter")

    await scenario("admin alter_configs (+ invalid value, unknown topic)", s_alter)

    async def s_describe_broker():
        r = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "0")], include_synonyms=True)
        res = r[0].resources[0]
        eq(err_name(res[0]), "NoError", "broker describe")
        assert len(res[4]) > 5, "entries"

    await scenario("admin describe_configs broker (synonyms)", s_describe_broker)

    async def s_cluster():
        c = await admin.describe_cluster()
        eq(len(c["brokers"]), 1, "brokers")
        assert c["cluster_id"], "cluster id"
        eq(c["controller_id"], c["brokers"][0]["node_id"], "controller")
        d = await admin.describe_topics([T("cfg")])
        eq(len(d[0]["partitions"]), 2, "partitions")
        eq(d[0]["error_code"], 0, "error")

    await scenario("admin describe_cluster + describe_topics", s_cluster)

    async def s_partitions():
        r = await admin.create_partitions({T("cfg"): NewPartitions(5)})
        eq(topic_errors(r), {T("cfg"): "NoError"}, "create partitions")
        d = await admin.describe_topics([T("cfg")])
        eq(len(d[0]["partitions"]), 5, "partitions")
        # aiokafka raises the first topic error instead of returning it
        await expect_error(admin.create_partitions({T("cfg"): NewPartitions(3)}), "InvalidPartitionsError")
        await expect_error(admin.create_partitions({T("nosuch"): NewPartitions(3)}), "UnknownTopicOrPartitionError")

    await scenario("admin create_partitions (+ decrease, unknown)", s_partitions)

    async def s_delete():
        await create(T("del"))
        r = await admin.delete_topics([T("del")])
        eq(topic_errors(r), {T("del"): "NoError"}, "delete")
        assert T("del") not in await admin.list_topics(), "gone"
        r = await admin.delete_topics([T("del")])
        eq(topic_errors(r), {T("del"): "UnknownTopicOrPartitionError"}, "delete unknown")

    await scenario("admin delete_topics (+ unknown)", s_delete)

    producer = AIOKafkaProducer(bootstrap_servers=BROKER, acks="all")
    await producer.start()

    async def s_keyed():
        t = T("keyed")
        await create(t, 3)
        await producer.send_and_wait(t, b"v1", key=b"k1", headers=[("h1", b"x"), ("h2", b"\x01\x02")])
        await producer.send_and_wait(t, b"v2", key=None)
        await producer.send_and_wait(t, None, key=b"k3")
        got = await consume_n(t, 3)
        eq(len(got), 3, "count")
        m1 = [m for m in got if m.key == b"k1"][0]
        eq((m1.value, list(m1.headers)), (b"v1", [("h1", b"x"), ("h2", b"\x01\x02")]), "headers")
        assert any(m.key is None and m.value == b"v2" for m in got), "null key"
        assert any(m.key == b"k3" and m.value is None for m in got), "null value"

    await scenario("produce keyed/null key/null value/headers, consume earliest", s_keyed)

    for comp in ["gzip", "snappy", "lz4", "zstd"]:

        async def s_comp(comp=comp):
            t = T("c" + comp)
            await create(t)
            p = AIOKafkaProducer(bootstrap_servers=BROKER, compression_type=comp, linger_ms=50)
            await p.start()
            try:
                futs = [await p.send(t, f"value-{i}-".encode() * 20, key=f"k{i}".encode()) for i in range(300)]
                await asyncio.gather(*futs)
            finally:
                await p.stop()
            got = await consume_n(t, 300)
            eq(len(got), 300, "count")
            eq(got[299].value, b"value-299-" * 20, "last")

        await scenario(f"produce compression {comp}", s_comp)

    for acks in [0, 1, "all"]:

        async def s_acks(acks=acks):
            t = T(f"acks{acks}")
            await create(t)
            p = AIOKafkaProducer(bootstrap_servers=BROKER, acks=acks)
            await p.start()
            try:
                md = await p.send_and_wait(t, b"a")
                await p.send_and_wait(t, b"b")
                if acks != 0:
                    eq(md.offset, 0, "offset")
            finally:
                await p.stop()
            got = await consume_n(t, 2)
            eq([m.value for m in got], [b"a", b"b"], "values")

        await scenario(f"produce acks={acks}", s_acks)

    async def s_large():
        t = T("large")
        await create(t, 2)
        p = AIOKafkaProducer(bootstrap_servers=BROKER, linger_ms=100, max_batch_size=1000000, max_request_size=5000000)
        await p.start()
        try:
            futs = [await p.send(t, bytes([i % 256]) * 500, key=str(i).encode()) for i in range(10000)]
            await asyncio.gather(*futs)
        finally:
            await p.stop()
        c = AIOKafkaConsumer(bootstrap_servers=BROKER)
        await c.start()
        tps = [TopicPartition(t, 0), TopicPartition(t, 1)]
        ends = await c.end_offsets(tps)
        await c.stop()
        eq(sum(ends.values()), 10000, "end offsets")

    await scenario("produce large batches (10000 x 500 B)", s_large)

    async def s_idem():
        t = T("idem")
        await create(t)
        p = AIOKafkaProducer(bootstrap_servers=BROKER, enable_idempotence=True)
        await p.start()
        try:
            for i in range(5):
                md = await p.send_and_wait(t, f"i{i}".encode())
            eq(md.offset, 4, "offset")
        finally:
            await p.stop()

    await scenario("idempotent producer", s_idem)

    async def s_offsets():
        t = T("ts")
        await create(t)
        base = int(time.time() * 1000) - 100000
        for i in range(4):
            await producer.send_and_wait(t, f"t{i}".encode(), timestamp_ms=base + i * 1000)
        c = AIOKafkaConsumer(bootstrap_servers=BROKER)
        await c.start()
        try:
            tp = TopicPartition(t, 0)
            eq((await c.beginning_offsets([tp]))[tp], 0, "earliest")
            eq((await c.end_offsets([tp]))[tp], 4, "latest")
            r = await c.offsets_for_times({tp: base + 1500})
            eq((r[tp].offset, r[tp].timestamp), (2, base + 2000), "by ts")
            r = await c.offsets_for_times({tp: base + 10**7})
            eq(r[tp], None, "future ts")
        finally:
            await c.stop()

    await scenario("list offsets earliest/latest/by timestamp", s_offsets)

    async def s_delete_records():
        t = T("delrec")
        await create(t)
        for i in range(5):
            await producer.send_and_wait(t, f"d{i}".encode())
        tp = TopicPartition(t, 0)
        r = await admin.delete_records({tp: RecordsToDelete(3)})
        eq(r, {tp: 3}, "low watermark")
        got = await consume_n(t, 2)
        eq([m.value for m in got], [b"d3", b"d4"], "remaining")
        await expect_error(admin.delete_records({tp: RecordsToDelete(100)}), "OffsetOutOfRange")

    await scenario("delete records (+ beyond HW -> OFFSET_OUT_OF_RANGE)", s_delete_records)

    async def s_group():
        t = T("grp")
        gid = f"aio-grp-{RUN}"
        await create(t, 3)
        consumers = []
        seen = {}
        for _ in range(3):
            c = AIOKafkaConsumer(
                t,
                bootstrap_servers=BROKER,
                group_id=gid,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                session_timeout_ms=10000,
                heartbeat_interval_ms=500,
                metadata_max_age_ms=1000,
            )
            await c.start()
            consumers.append(c)

        async def poll_all(cs, until):
            deadline = time.time() + 20
            while len(seen) < until and time.time() < deadline:
                for i, c in enumerate(cs):
                    batch = await c.getmany(timeout_ms=100)
                    for tp, msgs in batch.items():
                        for m in msgs:
                            seen[(tp.partition, m.offset)] = i
                        await c.commit({tp: msgs[-1].offset + 1})

        # wait until each member has exactly one partition
        deadline = time.time() + 20
        while time.time() < deadline:
            for c in consumers:
                await c.getmany(timeout_ms=50)
            if sorted(len(c.assignment()) for c in consumers) == [1, 1, 1]:
                break
        eq(sorted(len(c.assignment()) for c in consumers), [1, 1, 1], "3-way assignment")
        for i in range(30):
            await producer.send(t, str(i).encode(), partition=i % 3)
        await producer.flush()
        await poll_all(consumers, 30)
        eq(len(seen), 30, "consumed")
        groups = await admin.list_consumer_groups()
        assert any(g[0] == gid for g in groups), f"listed: {groups}"
        d = await admin.describe_consumer_groups([gid])
        g = d[0].groups[0]
        eq((err_name(g[0]), g[2], len(g[5])), ("NoError", "Stable", 3), "describe")
        await consumers[2].stop()
        deadline = time.time() + 20
        while time.time() < deadline:
            for c in consumers[:2]:
                await c.getmany(timeout_ms=50)
            if sum(len(c.assignment()) for c in consumers[:2]) == 3:
                break
        eq(sum(len(c.assignment()) for c in consumers[:2]), 3, "rebalanced to 2")
        for i in range(30):
            await producer.send(t, f"b{i}".encode(), partition=i % 3)
        await producer.flush()
        await poll_all(consumers[:2], 60)
        eq(len(seen), 60, "consumed after rebalance")
        # commit async-style (aiokafka commit is a coroutine; fire two concurrently)
        await asyncio.gather(*(c.commit() for c in consumers[:2]))
        for c in consumers[:2]:
            await c.stop()
        offs = await admin.list_consumer_group_offsets(gid)
        eq(sorted(o.offset for o in offs.values()), [20, 20, 20], "committed")
        d = await admin.describe_consumer_groups([gid])
        eq(d[0].groups[0][2], "Empty", "empty")

    await scenario("consumer group 3 members, rebalance on leave, commit, offsets read back", s_group)

    async def s_seek():
        t = T("seek")
        gid = f"aio-seek-{RUN}"
        await create(t)
        for i in range(10):
            await producer.send(t, f"s{i}".encode())
        await producer.flush()
        tp = TopicPartition(t, 0)
        c = AIOKafkaConsumer(bootstrap_servers=BROKER, group_id=gid, enable_auto_commit=False)
        await c.start()
        try:
            c.assign([tp])
            c.seek(tp, 5)
            m = await c.getone()
            eq(m.value, b"s5", "seek")
            await c.seek_to_beginning(tp)
            m = await c.getone()
            eq(m.value, b"s0", "seek_to_beginning")
            await c.seek_to_end(tp)
            eq(await c.position(tp), 10, "seek_to_end")
            await c.commit({tp: OffsetAndMetadata(7, "meta")})
            eq(await c.committed(tp), 7, "committed")
            c.pause(tp)
            c.seek(tp, 0)
            r = await c.getmany(timeout_ms=500)
            eq(r, {}, "paused")
            c.resume(tp)
            r = await c.getmany(timeout_ms=2000)
            assert r.get(tp), "resumed"
        finally:
            await c.stop()
        offs = await admin.list_consumer_group_offsets(gid)
        eq((offs[tp].offset, offs[tp].metadata), (7, "meta"), "metadata round trip")

    await scenario("assign + seek + commit with metadata + committed + pause/resume", s_seek)

    async def s_latest():
        t = T("latest")
        await create(t)
        await producer.send_and_wait(t, b"old")
        c = AIOKafkaConsumer(t, bootstrap_servers=BROKER, group_id=f"aio-latest-{RUN}", auto_offset_reset="latest")
        await c.start()
        try:
            deadline = time.time() + 10
            while not c.assignment() and time.time() < deadline:
                await c.getmany(timeout_ms=100)
            await c.position(TopicPartition(t, 0))
            await producer.send_and_wait(t, b"new")
            m = await asyncio.wait_for(c.getone(), 10)
            eq(m.value, b"new", "latest")
        finally:
            await c.stop()

    await scenario("consume from latest", s_latest)

    async def s_txn():
        t = T("txn")
        src = T("txnsrc")
        gid = f"aio-txn-{RUN}"
        await create(t, 2)
        await create(src, 1)
        p = AIOKafkaProducer(bootstrap_servers=BROKER, transactional_id=f"aio-tx-{RUN}")
        await p.start()
        try:
            async with p.transaction():
                await p.send(t, b"committed0", key=b"a")
            await p.begin_transaction()
            await p.send(t, b"aborted1", key=b"a")
            await p.send(t, b"aborted2", key=b"b")
            await p.abort_transaction()
            await p.begin_transaction()
            await p.send(t, b"committed1", key=b"a")
            await p.send(t, b"committed2", key=b"b")
            await p.send_offsets_to_transaction({TopicPartition(src, 0): 42}, gid)
            await p.commit_transaction()
        finally:
            await p.stop()
        rc = await consume_n(t, 3, isolation="read_committed", wait=5)
        eq(sorted(m.value for m in rc), [b"committed0", b"committed1", b"committed2"], "read_committed")
        ru = await consume_n(t, 5, wait=5)
        eq(len(ru), 5, "read_uncommitted")
        offs = await admin.list_consumer_group_offsets(gid)
        eq(offs[TopicPartition(src, 0)].offset, 42, "send_offsets")

    await scenario("transactions commit/abort + read_committed + send_offsets", s_txn)

    async def s_fence():
        t = T("fence")
        await create(t)
        tid = f"aio-fence-{RUN}"
        p1 = AIOKafkaProducer(bootstrap_servers=BROKER, transactional_id=tid)
        await p1.start()
        await p1.begin_transaction()
        await p1.send_and_wait(t, b"p1")
        p2 = AIOKafkaProducer(bootstrap_servers=BROKER, transactional_id=tid)
        await p2.start()
        try:
            await expect_error(p1.commit_transaction(), "Fenced")
        finally:
            await p1.stop()
            await p2.stop()

    await scenario("transactions fencing", s_fence)

    # error paths
    async def s_unknown_topic():
        p = AIOKafkaProducer(bootstrap_servers=BROKER, request_timeout_ms=3000)
        await p.start()
        try:
            # aiokafka waits for metadata of the topic, then gives up
            await expect_error(p.send_and_wait(T("unknown-noauto"), b"x", partition=0), "")
        finally:
            await p.stop()

    async def s_bad_partition():
        t = T("keyed")
        try:
            await producer.send_and_wait(t, b"x", partition=9)
        except (AssertionError, KafkaError, ValueError) as e:
            return e
        raise AssertionError("partition 9 accepted")

    await scenario("produce bad partition -> refused", s_bad_partition)

    async def s_too_large():
        t = T("big")
        await create(t, 1, {"max.message.bytes": "10000"})
        await expect_error(producer.send_and_wait(t, b"x" * 20000), "MessageSizeTooLarge")

    await scenario("produce too large -> MESSAGE_TOO_LARGE", s_too_large)

    async def s_invalid_name():
        # aiokafka retries the metadata lookup until request_timeout_ms: keep it short
        p = AIOKafkaProducer(bootstrap_servers=BROKER, request_timeout_ms=3000)
        await p.start()
        try:
            await expect_error(p.send_and_wait("bad name?", b"x"), "")
        finally:
            await p.stop()

    await scenario("produce invalid topic name -> error", s_invalid_name)

    async def s_auto():
        t = T("auto")
        md = await producer.send_and_wait(t, b"x")
        eq(md.offset, 0, "auto created")

    await scenario("auto-create topic on produce", s_auto)

    async def s_unknown_group():
        offs = await admin.list_consumer_group_offsets(f"nogroup-{RUN}")
        eq(offs, {}, "no offsets")

    await scenario("list offsets of unknown group -> empty", s_unknown_group)

    await producer.stop()
    await admin.close()
    fails = [r for r in results if r[1] == "FAIL"]
    print(f"\naiokafka: {len(results) - len(fails)}/{len(results)} pass")
    sys.exit(len(fails))


asyncio.run(main())
