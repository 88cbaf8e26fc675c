#!/usr/bin/env node
// kafkajs interoperability check against the franz broker.
//
// Usage: node check.js <first|second> <bootstrap> <topic> <group>
//
// first:  describeCluster lists one broker; createTopics <topic> with 3 partitions;
//         produce first-0..first-99 (keys k0..k99, acks=all); consume them all in <group>
//         from the beginning; commit explicitly; disconnect (leaves the group).
// second: produce second-0..second-49; consume in <group> again, which must resume
//         from the committed offsets (only the second-* values); commit; disconnect.
// Exits 0 on success, 1 with a one-line reason on stderr otherwise.
'use strict';

const { Kafka, Partitioners, logLevel } = require('kafkajs');

const OVERALL_TIMEOUT_MS = 55_000;
const REQUEST_TIMEOUT_MS = 10_000;
const CONSUME_TIMEOUT_MS = 30_000;
const PARTITIONS = 3;

class CheckFailed extends Error {}

const [phase, bootstrap, topic, group] = process.argv.slice(2);
if (process.argv.length !== 6 || !['first', 'second'].includes(phase)) {
  console.error('usage: check.js <first|second> <bootstrap> <topic> <group>');
  process.exit(2);
}

function fail(reason) {
  console.error(`FAIL kafkajs ${phase}: ${reason}`);
  process.exit(1);
}

const overall = setTimeout(() => fail(`overall timeout of ${OVERALL_TIMEOUT_MS / 1000}s exceeded`), OVERALL_TIMEOUT_MS);

// Labels any error raised by `fn` with the step that was running.
async function step(name, fn) {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof CheckFailed) throw error;
    const causeText = error && error.cause ? String(error.cause.message || error.cause) : '';
    const cause = causeText && causeText !== error.message ? ` (cause: ${causeText})` : '';
    throw new CheckFailed(`${name}: ${error && error.name}: ${error && error.message}${cause}`);
  }
}

const kafka = new Kafka({
  clientId: 'interop-kafkajs',
  brokers: [bootstrap],
  connectionTimeout: 5_000,
  requestTimeout: REQUEST_TIMEOUT_MS,
  retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 2_000 },
  // Quiet, so the FAIL line is the whole story; KAFKAJS_LOG_LEVEL=error|info|debug shows kafkajs' own logs.
  logLevel: logLevel.NOTHING,
});

async function checkCluster() {
  const admin = kafka.admin();
  await step('admin connect', () => admin.connect());
  try {
    const cluster = await step('describeCluster (Metadata)', () => admin.describeCluster());
    if (cluster.brokers.length !== 1) {
      throw new CheckFailed(`expected exactly 1 broker in metadata, got ${JSON.stringify(cluster.brokers)}`);
    }
    const created = await step(`createTopics ${topic}`, () =>
      admin.createTopics({
        topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
        waitForLeaders: true,
        timeout: REQUEST_TIMEOUT_MS,
      }),
    );
    if (!created) throw new CheckFailed(`createTopics ${topic}: the topic already existed`);
    const metadata = await step(`fetchTopicMetadata ${topic}`, () => admin.fetchTopicMetadata({ topics: [topic] }));
    const partitions = metadata.topics[0].partitions.length;
    if (partitions !== PARTITIONS) {
      throw new CheckFailed(`topic ${topic} has ${partitions} partitions in metadata, expected ${PARTITIONS}`);
    }
  } finally {
    await admin.disconnect();
  }
}

async function produce(prefix, count) {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await step('producer connect', () => producer.connect());
  try {
    const messages = [];
    for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `${prefix}-${i}` });
    // send resolves once the broker has acknowledged every record (acks=-1: all replicas).
    await step(`produce ${prefix}-0..${count - 1}`, () =>
      producer.send({ topic, acks: -1, timeout: REQUEST_TIMEOUT_MS, messages }),
    );
  } finally {
    await producer.disconnect();
  }
}

async function consume(expected) {
  const consumer = kafka.consumer({
    groupId: group,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    maxWaitTimeInMs: 500, // an idle fetch is held this long; disconnect waits for it
  });
  const seen = new Set();
  const next = new Map(); // partition -> next offset to commit
  let problem = null;
  let done;
  const complete = new Promise((resolve) => (done = resolve));

  await step('consumer connect', () => consumer.connect());
  try {
    await step(`subscribe ${topic}`, () => consumer.subscribe({ topics: [topic], fromBeginning: true }));
    await step('consumer run', () =>
      consumer.run({
        autoCommit: false,
        eachMessage: async ({ partition, message }) => {
          const value = message.value.toString();
          const where = `${topic}/${partition}@${message.offset}`;
          if (!expected.has(value)) problem = problem || `unexpected value ${value} at ${where}`;
          else if (seen.has(value)) problem = problem || `duplicate value ${value} at ${where}`;
          seen.add(value);
          next.set(partition, (BigInt(message.offset) + 1n).toString());
          if (problem || seen.size === expected.size) done();
        },
      }),
    );
    const timer = new Promise((resolve) => setTimeout(resolve, CONSUME_TIMEOUT_MS, 'timeout'));
    if ((await Promise.race([complete, timer])) === 'timeout') {
      const missing = [...expected].filter((v) => !seen.has(v));
      throw new CheckFailed(
        `consumed ${seen.size}/${expected.size} expected values in ${CONSUME_TIMEOUT_MS / 1000}s; missing e.g. ${missing.slice(0, 5)}`,
      );
    }
    if (problem) throw new CheckFailed(problem);
    const offsets = [...next].map(([partition, offset]) => ({ topic, partition, offset }));
    await step(`commitOffsets ${JSON.stringify(offsets)}`, () => consumer.commitOffsets(offsets));
    if (problem) throw new CheckFailed(problem); // anything that arrived while committing
  } finally {
    await consumer.disconnect(); // stops the run loop and sends LeaveGroup
  }
}

async function main() {
  let prefix, count;
  if (phase === 'first') {
    await checkCluster();
    [prefix, count] = ['first', 100];
  } else {
    [prefix, count] = ['second', 50];
  }
  await produce(prefix, count);
  const expected = new Set();
  for (let i = 0; i < count; i++) expected.add(`${prefix}-${i}`);
  await step(`consume in group ${group}`, () => consume(expected));
  console.log(`OK kafkajs ${phase}: ${count} records produced and consumed in group ${group}`);
}

main().then(
  () => {
    clearTimeout(overall);
    process.exit(0);
  },
  (error) => fail(error instanceof CheckFailed ? error.message : `${error && error.name}: ${error && error.message}`),
);
