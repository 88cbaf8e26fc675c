//! `franz topics`: a table of the cluster's topics, their partitions and end offsets.

use std::io::Write;

use crate::config::Config;
use crate::kafka::admin;

/// `franz topics`: a table of topics, partitions and end offsets.
pub async fn topics(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let topics = admin::describe(&config.bootstrap, admin::REACH_TIMEOUT).await?;
    writeln!(out, "{:<30} {:>10} {:>12}  end offsets by partition", "topic", "partitions", "records")?;
    for topic in topics {
        let total: i64 = topic.end_offsets.iter().sum();
        let offsets: Vec<String> = topic.end_offsets.iter().map(i64::to_string).collect();
        writeln!(out, "{:<30} {:>10} {:>12}  {}", topic.name, topic.partitions, total, offsets.join(" "))?;
    }
    Ok(())
}
