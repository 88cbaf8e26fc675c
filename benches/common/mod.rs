//! What the benches share: reading a franz process's peak memory, filling a topic, waiting for a broker, and
//! building a ticket store straight from lifecycle events (no broker, no akte) for the benches that ask the store.

/// The peak resident set (VmHWM) of process `pid`, in MiB; NaN where /proc does not say.
#[allow(dead_code)] // Not every bench runs franz as a process.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// `pid`'s RSS now, in MiB.
#[allow(dead_code)] // Not every bench measures a phase's peak.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A size in `/proc/{pid}/status` (`field` with its colon), in MiB; NaN where it does not say.
#[allow(dead_code)] // Not every bench runs franz as a process.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Starts measuring `pid`'s peak RSS anew (Linux's `clear_refs` 5), so that [`peak_rss_mib`] then tells the peak of
/// what follows alone; `false` where the kernel does not allow it.
#[allow(dead_code)] // Not every bench measures a phase's peak.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Writes records as fast as the broker takes them: many in flight, the oldest awaited when librdkafka's queue is
/// full; [`Writer::finish`] waits for every acknowledgement. What the benches that fill a topic share.
#[allow(dead_code)] // Not every bench that reads peak memory fills a topic.
pub struct Writer {
    producer: rdkafka::producer::FutureProducer,
    pending: futures::stream::FuturesUnordered<rdkafka::producer::DeliveryFuture>,
}

#[allow(dead_code)]
impl Writer {
    pub fn new(bootstrap: &str) -> anyhow::Result<Writer> {
        let producer = franz::kafka::client_config(bootstrap)
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("compression.type", "lz4")
            .create()?;
        Ok(Writer { producer, pending: futures::stream::FuturesUnordered::new() })
    }

    pub async fn send(&mut self, topic: &str, key: &str, payload: &[u8], partition: i32) {
        use futures::StreamExt as _;
        let record = || rdkafka::producer::FutureRecord::to(topic).key(key).payload(payload).partition(partition);
        loop {
            match self.producer.send_result(record()) {
                Ok(delivery) => return self.pending.push(delivery),
                Err(_) => {
                    self.pending.next().await;
                }
            }
        }
    }

    pub async fn finish(mut self) -> anyhow::Result<()> {
        use futures::StreamExt as _;
        while let Some(result) = self.pending.next().await {
            result.map_err(|_| anyhow::anyhow!("canceled"))?.map_err(|(e, _)| e)?;
        }
        Ok(())
    }
}

/// Waits for a `franz broker` child to print its `ready` line, and keeps draining its standard output after (a
/// closed pipe would end the broker at its next line).
#[allow(dead_code)] // Not every bench starts a broker of its own.
pub fn broker_ready(broker: &mut std::process::Child) -> anyhow::Result<()> {
    use std::io::BufRead as _;
    let mut ready = String::new();
    let mut stdout = std::io::BufReader::new(broker.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?);
    stdout.read_line(&mut ready)?;
    anyhow::ensure!(ready.starts_with("ready"), "franz broker: {ready}");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Ok(())
}

/// The events that `commands` (one ticket's, in order) bring about as the lifecycle decides them under the default
/// policy, serialized as they stand on the ticket-events topic, and the ticket they leave. A refused command is an
/// event too (a rejection), so a caller that needs every command taken checks the ticket.
#[allow(dead_code)] // Only the benches that build a store from events use it.
pub fn ticket_events(
    commands: &[franz::schema::lifecycle::Command],
) -> (Vec<Vec<u8>>, Option<franz::lifecycle::TicketState>) {
    use franz::lifecycle::{self, Policy};
    let mut state = None;
    let events = commands
        .iter()
        .map(|command| {
            let event = lifecycle::decide(state.as_ref(), command, "2026-12-07T10:00:00.000Z", &Policy::default());
            state = lifecycle::apply(state.take(), &event);
            serde_json::to_vec(&event).expect("an event serializes")
        })
        .collect();
    (events, state)
}

/// Writes `payloads` (ticket events, in order) into a fresh store's writer as if read from partition 0, in bulk (the
/// filter indexes built once at the end), as a rebuild does.
#[allow(dead_code)] // Only the benches that build a store from events use it.
pub fn fill_store(writer: &mut franz::store::Writer, payloads: &[Vec<u8>]) -> anyhow::Result<()> {
    const CHUNK: usize = 5_000;
    writer.begin_bulk()?;
    for (chunk, payloads) in payloads.chunks(CHUNK).enumerate() {
        let records: Vec<franz::store::Record<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, payload)| franz::store::Record { partition: 0, offset: (chunk * CHUNK + i) as i64, payload })
            .collect();
        writer.apply(&records)?;
    }
    writer.end_bulk()
}
