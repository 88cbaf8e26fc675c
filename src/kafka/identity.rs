//! Which cluster a bootstrap address leads to and which topic a name stands for there: the cluster id and the
//! topic id (Kafka's topic UUID), asked with one Metadata request of franz's own, since librdkafka shows neither
//! topic ids nor, per topic, anything that tells two topics of the same name apart.
//!
//! The ticket store compares them with the ones it was built from (see `store::Identity`); this module only asks
//! and decides nothing. The answer comes from whatever listens at the address, so it is read within a time limit,
//! refused above a size limit, buffered only as its bytes arrive, and decoded without panicking.

use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::{BufMut as _, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable as _, Encodable as _, StrBytes};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Metadata v10 is the first version that carries topic ids (Kafka 2.8, KIP-516). Kafka 2.8 to 4.x, Redpanda and
/// franz's embedded broker (v0 to v12) all answer it, so no ApiVersions round trip is needed to pick a version.
const VERSION: i16 = 10;
/// The largest answer accepted. A metadata answer for one topic is a few kilobytes; this bound only keeps a
/// hostile or confused peer from making franz buffer without limit.
const MAX_ANSWER: usize = 64 << 20;
/// The request's correlation id: one request per connection, so any fixed value does.
const CORRELATION: i32 = 1;

/// What a cluster says about itself and one topic. `None` is unknown: a broker too old to say, or a topic the
/// answer did not describe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: Option<String>,
    pub topic_id: Option<Uuid>,
}

/// Asks the brokers of `bootstrap` (a comma-separated list, tried in order until one answers) for the cluster id
/// and the id of `topic`, each try within `timeout`.
pub async fn fetch(bootstrap: &str, topic: &str, timeout: Duration) -> anyhow::Result<Identity> {
    let mut failures = Vec::new();
    for address in bootstrap.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match tokio::time::timeout(timeout, ask(address, topic)).await {
            Ok(Ok(identity)) => return Ok(identity),
            Ok(Err(error)) => failures.push(format!("{address}: {error:#}")),
            Err(_) => failures.push(format!("{address}: no answer within {} s", timeout.as_secs())),
        }
    }
    if failures.is_empty() {
        bail!("no broker address in {bootstrap:?}; pass --bootstrap HOST:PORT");
    }
    Err(anyhow!("no broker said which cluster and topic it holds ({})", failures.join("; ")))
}

/// One Metadata request to one broker, on a connection of its own.
async fn ask(address: &str, topic: &str) -> anyhow::Result<Identity> {
    let mut stream = TcpStream::connect(address).await.context("cannot connect")?;
    stream.write_all(&request(topic)?).await.context("cannot send the metadata request")?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).await.context("the connection closed without an answer")?;
    let length = i32::from_be_bytes(length);
    let length = usize::try_from(length).ok().filter(|l| (4..=MAX_ANSWER).contains(l)).ok_or_else(|| {
        anyhow!("an answer of {length} bytes is outside 4..={MAX_ANSWER}; is this a Kafka broker's plaintext listener?")
    })?;
    // Read as the bytes arrive: an announced length reserves nothing by itself.
    let mut body = Vec::new();
    (&mut stream).take(length as u64).read_to_end(&mut body).await.context("cannot read the answer")?;
    if body.len() != length {
        bail!("the answer was cut short ({} of {length} bytes)", body.len());
    }
    parse(Bytes::from(body), topic)
}

/// A framed Metadata request for `topic`, which it must not create.
fn request(topic: &str) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(CORRELATION)
        .with_client_id(Some(StrBytes::from_static_str("franz")));
    let name = TopicName(StrBytes::from_string(topic.to_owned()));
    let body = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(name))]))
        .with_allow_auto_topic_creation(false);
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header.encode(&mut frame, ApiKey::Metadata.request_header_version(VERSION)).context("cannot encode a header")?;
    body.encode(&mut frame, VERSION).context("cannot encode a metadata request")?;
    let length = i32::try_from(frame.len() - 4).context("a metadata request too large to send")?;
    frame[..4].copy_from_slice(&length.to_be_bytes());
    Ok(frame.freeze())
}

/// The identity in an answer's bytes (after its length). An empty cluster id and an all-zero topic id are
/// unknown, as is the id of a topic the answer reports with an error or leaves out.
fn parse(mut answer: Bytes, topic: &str) -> anyhow::Result<Identity> {
    let header = ResponseHeader::decode(&mut answer, ApiKey::Metadata.response_header_version(VERSION))
        .context("an unreadable answer header")?;
    if header.correlation_id != CORRELATION {
        bail!("an answer to another request (correlation id {})", header.correlation_id);
    }
    let response = MetadataResponse::decode(&mut answer, VERSION).context("an unreadable metadata answer")?;
    let cluster_id = response.cluster_id.map(|id| id.as_str().to_owned()).filter(|id| !id.is_empty());
    let topic_id = response
        .topics
        .iter()
        .find(|t| t.error_code == 0 && t.name.as_ref().is_some_and(|name| name.0.as_str() == topic))
        .map(|t| t.topic_id)
        .filter(|id| !id.is_nil());
    Ok(Identity { cluster_id, topic_id })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use tokio::net::TcpListener;

    use super::*;

    /// An answer's bytes as a broker would send them after the length.
    fn answer(correlation: i32, response: &MetadataResponse) -> Bytes {
        let mut out = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation)
            .encode(&mut out, ApiKey::Metadata.response_header_version(VERSION))
            .unwrap();
        response.encode(&mut out, VERSION).unwrap();
        out.freeze()
    }

    fn described(name: &str, id: Uuid, error_code: i16) -> MetadataResponseTopic {
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.into()))))
            .with_topic_id(id)
            .with_error_code(error_code)
    }

    fn cluster(id: &str, topics: Vec<MetadataResponseTopic>) -> MetadataResponse {
        MetadataResponse::default().with_cluster_id(Some(StrBytes::from_string(id.into()))).with_topics(topics)
    }

    /// A one-connection server that reads a request and answers `reply` (length included).
    async fn serve(reply: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut length = [0u8; 4];
            stream.read_exact(&mut length).await.unwrap();
            let mut request = vec![0u8; i32::from_be_bytes(length) as usize];
            stream.read_exact(&mut request).await.unwrap();
            let _ = stream.write_all(&reply).await;
            // Held open, so the client sees what it was sent and nothing more.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        address
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn the_cluster_id_and_the_named_topics_id_are_read_and_zero_or_missing_ones_are_unknown() {
        let id = Uuid::new_v4();
        let topics = vec![described("other", Uuid::new_v4(), 0), described("ticket-events", id, 0)];
        let got = parse(answer(CORRELATION, &cluster("c1", topics)), "ticket-events").unwrap();
        assert_eq!(got, Identity { cluster_id: Some("c1".into()), topic_id: Some(id) });

        let zero = parse(answer(CORRELATION, &cluster("c1", vec![described("t", Uuid::nil(), 0)])), "t").unwrap();
        assert_eq!(zero.topic_id, None, "an all-zero topic id is unknown");
        let failed = parse(answer(CORRELATION, &cluster("c1", vec![described("t", id, 3)])), "t").unwrap();
        assert_eq!(failed.topic_id, None, "a topic reported with an error has no id");
        let absent = parse(answer(CORRELATION, &MetadataResponse::default()), "t").unwrap();
        assert_eq!(absent, Identity::default(), "no cluster id and no topic: nothing known");
    }

    #[test]
    fn answers_that_are_cut_short_garbage_or_for_another_request_are_errors_not_panics() {
        let whole = answer(CORRELATION, &cluster("c1", vec![described("t", Uuid::new_v4(), 0)]));
        for cut in 0..whole.len() {
            assert!(parse(whole.slice(..cut), "t").is_err(), "an answer cut at {cut} bytes is refused");
        }
        assert!(parse(answer(7, &cluster("c1", vec![])), "t").is_err(), "another correlation id is refused");
        // A valid header and throttle time, then a broker array claiming four billion elements: refused before
        // anything is reserved for them.
        let mut hostile = BytesMut::new();
        hostile.put_i32(CORRELATION);
        hostile.put_u8(0);
        hostile.put_i32(0);
        hostile.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(parse(hostile.freeze(), "t").is_err());
        assert!(parse(Bytes::from(vec![0xff; 4096]), "t").is_err());
    }

    #[tokio::test]
    async fn the_next_address_is_asked_when_one_is_down_and_an_oversized_answer_is_refused() {
        let id = Uuid::new_v4();
        let good = serve(framed(&answer(CORRELATION, &cluster("c2", vec![described("t", id, 0)])))).await;
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        let got = fetch(&format!("{dead}, {good}"), "t", Duration::from_secs(5)).await.unwrap();
        assert_eq!(got, Identity { cluster_id: Some("c2".into()), topic_id: Some(id) });

        let huge = serve(i32::MAX.to_be_bytes().to_vec()).await;
        let error = fetch(&huge, "t", Duration::from_secs(5)).await.unwrap_err();
        assert!(format!("{error:#}").contains("outside 4..="), "{error:#}");
        let short = serve(framed(&[0, 0, 0, 1])[..6].to_vec()).await;
        assert!(fetch(&short, "t", Duration::from_millis(500)).await.is_err(), "a cut answer is an error");
        assert!(fetch(" , ", "t", Duration::from_secs(1)).await.is_err());
    }
}
