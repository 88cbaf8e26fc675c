//! Where a ticket's records go: the partition of `ticket-commands` and `ticket-events` that holds a ticket, and
//! sending a command there. Everyone who sends commands uses it (the desk, the CLI through it, the Discord buttons)
//! and akte decides by it, so it sits below all of them.

use anyhow::Context as _;

use crate::schema::lifecycle::Command;

/// The partition of a ticket in `ticket-commands` and `ticket-events`: librdkafka's default partitioner
/// (CRC-32 of the key), so franz's own producers land there without being told.
pub fn ticket_partition(ticket_id: &str, partitions: i32) -> i32 {
    (crc32fast::hash(ticket_id.as_bytes()) % partitions.max(1) as u32) as i32
}

/// Publishes `command` to the partition of `ticket-commands` that akte decides its ticket in, and waits for the
/// broker's acknowledgement.
pub async fn send_command(
    producer: &rdkafka::producer::FutureProducer<impl rdkafka::ClientContext + 'static>,
    topic: &str,
    partitions: i32,
    command: &Command,
) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(command).context("cannot serialize the command")?;
    let partition = ticket_partition(&command.ticket_id, partitions);
    let record =
        rdkafka::producer::FutureRecord::to(topic).key(&command.ticket_id).payload(&payload).partition(partition);
    producer.send(record, super::DELIVERY_TIMEOUT).await.map_err(|(error, _)| error)?;
    Ok(())
}
