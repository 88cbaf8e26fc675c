//! One request, from frame to answer: the API and version checked against `SUPPORTED`, the header and body decoded
//! (under `catch_unwind`, and refused if bytes are left over), the handler called, and its answer counted on the
//! meter and encoded with its header and size prefix, now or, for requests that change no state, only when the
//! connection's writer is ready for it.
//!
//! What a request means is the handlers' job; reading frames off the socket is `connection`'s.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::time::Instant;

use super::admission::Held;
use crate::Core;
use crate::apis::supported;
use crate::code;
use crate::handlers::{Pending, api_versions};
use crate::meter::ErrorCode;

/// What goes back for one request.
pub enum Reply {
    /// A response frame, counted as held until written.
    Frame(Bytes, Held),
    /// No answer (`acks=0`).
    Nothing,
    /// Close the connection instead of answering.
    HangUp,
}

/// An answer in the making.
pub(super) type Answer = BoxFuture<'static, Reply>;

/// Decodes one request and starts handling it. An `Err` closes the connection.
pub fn dispatch(core: &Arc<Core>, mut frame: Bytes, _peer: SocketAddr) -> Result<Answer, String> {
    let arrived = Instant::now();
    let raw_key = frame.slice(0..2).get_i16();
    let version = frame.slice(2..4).get_i16();
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    if key == ApiKey::ApiVersions && !supported(key, version) {
        // A client newer than us: answer in version 0 with the error and our versions, so it can retry lower.
        // Only the correlation id is read: the rest of a newer header is not ours to understand.
        let correlation_id = frame.slice(4..8).get_i32();
        let body = api_versions(code::UNSUPPORTED_VERSION);
        let asked = Asked { id: correlation_id, key, version: 0, arrived };
        return Ok(ready(core, answer(core, asked, &body)));
    }
    if !supported(key, version) {
        return Err(format!("{key:?} version {version} is not supported (see ApiVersions)"));
    }
    if key != ApiKey::Produce && frame.len() > core.settings.max_request_bytes {
        return Err(format!(
            "a {key:?} request of {} bytes is over the {} allowed for requests other than Produce (max_request_bytes)",
            frame.len(),
            core.settings.max_request_bytes
        ));
    }
    let header_version = key.request_header_version(version);
    let header = decode_guarded(|| RequestHeader::decode(&mut frame, header_version))?;
    let asked = Asked { id: header.correlation_id, key, version, arrived };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    // A body must fill its frame exactly: bytes left over mean the client and the broker disagree about the
    // request's layout, and guessing what the client meant is worse than telling it, by closing, that it erred.
    macro_rules! decode {
        ($type:ty) => {{
            let body = decode_guarded(|| <$type>::decode(&mut frame, version))?;
            if frame.has_remaining() && !known_padding(key, version, &frame) {
                return Err(format!(
                    "malformed request: {} bytes left over after the {key:?} v{version} body",
                    frame.remaining()
                ));
            }
            body
        }};
    }
    let answer = match key {
        ApiKey::ApiVersions => {
            let _ = decode!(ApiVersionsRequest);
            lazily(core, asked, |_| api_versions(code::NONE))
        }
        ApiKey::Metadata => {
            let request = decode!(MetadataRequest);
            if metadata_creates_nothing(core, &request, version) {
                lazily(core, asked, move |core| core.metadata(request, version))
            } else {
                // Creating topics is a change of state, made in arrival order like every other.
                ready(core, answer(core, asked, &core.metadata(request, version)))
            }
        }
        ApiKey::CreateTopics => pending(core, asked, core.create_topics(decode!(CreateTopicsRequest), version)),
        ApiKey::DeleteTopics => {
            ready(core, answer(core, asked, &core.delete_topics(decode!(DeleteTopicsRequest), version)))
        }
        ApiKey::Produce => pending(core, asked, core.produce(decode!(ProduceRequest), version)),
        ApiKey::Fetch => pending(core, asked, core.fetch(decode!(FetchRequest), version)),
        ApiKey::ListOffsets => {
            let request = decode!(ListOffsetsRequest);
            lazily(core, asked, move |core| core.list_offsets(request, version))
        }
        ApiKey::FindCoordinator => {
            let request = decode!(FindCoordinatorRequest);
            lazily(core, asked, move |core| core.find_coordinator(request, version))
        }
        ApiKey::InitProducerId => {
            ready(core, answer(core, asked, &core.init_producer_id(decode!(InitProducerIdRequest))))
        }
        ApiKey::JoinGroup => pending(core, asked, core.join_group(decode!(JoinGroupRequest), client_id)),
        ApiKey::SyncGroup => pending(core, asked, core.sync_group(decode!(SyncGroupRequest))),
        ApiKey::Heartbeat => ready(core, answer(core, asked, &core.heartbeat(decode!(HeartbeatRequest)))),
        ApiKey::LeaveGroup => ready(core, answer(core, asked, &core.leave_group(decode!(LeaveGroupRequest), version))),
        ApiKey::OffsetCommit => pending(core, asked, core.offset_commit(decode!(OffsetCommitRequest))),
        ApiKey::OffsetFetch => {
            let request = decode!(OffsetFetchRequest);
            lazily(core, asked, move |core| core.offset_fetch(request, version))
        }
        ApiKey::ListGroups => {
            let request = decode!(ListGroupsRequest);
            lazily(core, asked, move |core| core.list_groups(request, version))
        }
        ApiKey::DescribeGroups => {
            let request = decode!(DescribeGroupsRequest);
            lazily(core, asked, move |core| core.describe_groups(request))
        }
        other => return Err(format!("{other:?} is not supported")),
    };
    Ok(answer)
}

/// Leftover bytes that a real client is known to send and Kafka ignores. librdkafka (franz's own client) sends a
/// flexible Metadata request for all topics (a null topic array) three bytes longer than its body: the array count
/// is written into a 4-byte placeholder of which the compact count uses one. Refusing those would cut franz off
/// from itself; three bytes are all it may leave, so the exception holds no more than the frame already did.
fn known_padding(key: ApiKey, version: i16, leftover: &[u8]) -> bool {
    key == ApiKey::Metadata && version >= 9 && leftover.len() <= 3
}

/// Runs a decoder, turning both its errors and any panic inside it into a message.
fn decode_guarded<T>(decode: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("malformed request: {error:#}")),
        Err(_) => Err("malformed request (the decoder gave up)".into()),
    }
}

/// A built answer, counted as held until written; `None` (an answer that could not be encoded) hangs up.
fn built(core: &Arc<Core>, frame: Option<Bytes>) -> Reply {
    frame.map_or(Reply::HangUp, |frame| {
        let bytes = frame.len();
        Reply::Frame(frame, Held::new(core.clone(), bytes))
    })
}

fn ready(core: &Arc<Core>, frame: Option<Bytes>) -> Answer {
    futures::future::ready(built(core, frame)).boxed()
}

/// The answer to a request that changes no state, built only when the connection's writer polls it, that is once
/// every earlier answer is written: however many such requests a client pipelines without reading, the connection
/// holds at most one of their answers built (like fetches, whose long polls are the same kind of future). The
/// answer shows the broker's state when it is built, which may include changes made by the connection's later
/// requests, dispatched meanwhile; answering a request later than it arrived is what any busy broker may do.
fn lazily<T, F>(core: &Arc<Core>, asked: Asked, build: F) -> Answer
where
    T: Encodable + ErrorCode,
    F: FnOnce(&Core) -> T + Send + 'static,
{
    let core = core.clone();
    async move {
        let body = build(&core);
        built(&core, answer(&core, asked, &body))
    }
    .boxed()
}

/// Whether a Metadata request creates no topic (auto-creation is off for it, or every topic it names exists), so
/// answering it changes no state and can wait until the writer is ready for the answer.
fn metadata_creates_nothing(core: &Core, request: &MetadataRequest, version: i16) -> bool {
    let auto_create = core.settings.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    !auto_create
        || request.topics.as_ref().is_none_or(|topics| {
            topics.iter().all(|topic| topic.name.as_ref().is_none_or(|name| core.topics.get(name).is_some()))
        })
}

/// An answer a handler gives now or later. A fetch's is read from the log when the writer first polls it (see
/// `Core::fetch`), and counted as held from then until it is written.
fn pending<T: Encodable + ErrorCode + HeaderVersion + Send + 'static>(
    core: &Arc<Core>,
    asked: Asked,
    pending: Pending<T>,
) -> Answer {
    match pending {
        Pending::Now(body) => ready(core, answer(core, asked, &body)),
        Pending::Later(future) => {
            let core = core.clone();
            future.map(move |body| built(&core, answer(&core, asked, &body))).boxed()
        }
        Pending::Silent(body) => {
            // acks=0: the client is told nothing, but a refusal still counts as one.
            core.meter.answered(asked.key, body.error_code(), asked.arrived.elapsed());
            futures::future::ready(Reply::Nothing).boxed()
        }
        Pending::HangUp => futures::future::ready(Reply::HangUp).boxed(),
    }
}

/// Which request an answer is for, and when it arrived.
#[derive(Clone, Copy)]
struct Asked {
    id: i32,
    key: ApiKey,
    version: i16,
    arrived: Instant,
}

/// Counts the answer to `asked` (its API, its error code, how long it took) and encodes it.
fn answer<T: Encodable + ErrorCode>(core: &Core, asked: Asked, body: &T) -> Option<Bytes> {
    core.meter.answered(asked.key, body.error_code(), asked.arrived.elapsed());
    encode(asked.id, asked.key, asked.version, body)
}

/// Encodes a response with its header and size prefix. `None` (and a log line) if the body cannot be encoded
/// in this version, which would be a bug in a handler; the connection is then closed, so the client retries
/// rather than waits forever.
fn encode<T: Encodable>(correlation_id: i32, key: ApiKey, version: i16, body: &T) -> Option<Bytes> {
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result =
        header.encode(&mut frame, key.response_header_version(version)).and_then(|()| body.encode(&mut frame, version));
    if let Err(error) = result {
        tracing::error!("cannot encode the {key:?} v{version} response: {error:#}");
        return None;
    }
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    Some(frame.freeze())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::apis::SUPPORTED;
    use proptest::prelude::*;

    fn core(dir: &std::path::Path) -> Arc<Core> {
        let settings = crate::Settings::new("127.0.0.1:9092".parse().unwrap(), dir.to_path_buf());
        Arc::new(crate::open(settings, "127.0.0.1:9092".parse().unwrap()).unwrap())
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:1".parse().unwrap()
    }

    #[test]
    fn a_client_asking_for_a_newer_api_versions_gets_version_0_with_the_error_and_our_versions() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(99);
        frame.put_i32(7);
        frame.put_i16(-1);
        let Reply::Frame(answer, _) = futures::executor::block_on(dispatch(&core, frame.freeze(), peer()).unwrap())
        else {
            panic!("ApiVersions is answered");
        };
        let mut body = answer.slice(4..);
        assert_eq!(body.get_i32(), 7, "correlation id");
        let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(response.error_code, code::UNSUPPORTED_VERSION);
        assert_eq!(response.api_keys.len(), SUPPORTED.len());
    }

    #[test]
    fn an_array_claiming_two_billion_elements_is_refused_without_allocating_them() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(1);
        frame.put_i32(1);
        frame.put_i16(-1);
        frame.put_i32(i32::MAX);
        frame.extend_from_slice(&[0u8; 16]);
        assert!(dispatch(&core, frame.freeze(), peer()).is_err());
    }

    fn fetch_frame(topic: &str, max_wait_ms: i32, min_bytes: i32) -> Bytes {
        let partition = fetch_request::FetchPartition::default().with_partition(0).with_partition_max_bytes(1 << 20);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(1 << 20)
            .with_topics(vec![topic]);
        let mut frame = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(4)
            .with_correlation_id(1);
        header.encode(&mut frame, ApiKey::Fetch.request_header_version(4)).unwrap();
        request.encode(&mut frame, 4).unwrap();
        frame.freeze()
    }

    /// Appends one small batch to the partition, visible at once, and wakes its watchers.
    fn append(partition: &crate::topics::Partition) {
        let batch = crate::log::batch::tests::make_batch(0, &[b"hello"], (-1, -1, -1));
        let header = partition.log().append(&batch, true).unwrap();
        partition.publish(header.next_offset());
    }

    fn log_reads(core: &Core) -> u64 {
        core.network.fetch_log_reads.load(Ordering::SeqCst)
    }

    // Regression: fetch answers were read when the request arrived, so queued answers of a client that does not
    // read pinned their records.
    #[tokio::test]
    async fn a_queued_fetch_answer_reads_the_log_only_when_polled() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let partition = core.topics.create("t", 1, Default::default()).unwrap().partitions[0].clone();
        append(&partition);
        let answer = dispatch(&core, fetch_frame("t", 0, 1), peer()).unwrap();
        assert_eq!(log_reads(&core), 0, "dispatching a fetch reads nothing");
        let Reply::Frame(frame, _held) = answer.await else { panic!("the fetch is answered") };
        assert_eq!(log_reads(&core), 1, "answering reads the log once");
        assert_eq!(core.network.answers_held.load(Ordering::SeqCst), 1, "held until written");
        assert!(frame.len() > 60, "the answer carries the batch");
    }

    // Regression: a long poll whose min_bytes was never reached re-read up to max_bytes on every watermark change.
    #[tokio::test]
    async fn a_long_poll_for_more_than_arrives_reads_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let partition = core.topics.create("t", 1, Default::default()).unwrap().partitions[0].clone();
        append(&partition);
        let mut answer = dispatch(&core, fetch_frame("t", 300, i32::MAX), peer()).unwrap();
        for _ in 0..5 {
            append(&partition);
            // Each poll sees the watermark move, looks at what is available, and goes back to waiting.
            assert!(futures::poll!(&mut answer).is_pending(), "min_bytes is not reached");
        }
        assert_eq!(log_reads(&core), 0, "waiting reads nothing");
        let Reply::Frame(frame, _held) = answer.await else { panic!("the fetch is answered at max_wait") };
        assert_eq!(log_reads(&core), 1, "the log is read once, to answer");
        let mut body = frame.slice(8..);
        let response = FetchResponse::decode(&mut body, 4).unwrap();
        let records = response.responses[0].partitions[0].records.clone().unwrap();
        let one = crate::log::batch::tests::make_batch(0, &[b"hello"], (-1, -1, -1)).len();
        assert_eq!(records.len(), 6 * one, "the answer has all six batches");
    }

    #[test]
    fn bytes_after_a_request_body_are_a_malformed_request() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let mut frame = BytesMut::new();
        frame.put_i16(ApiKey::ApiVersions as i16);
        frame.put_i16(0);
        frame.put_i32(7);
        frame.put_i16(-1);
        assert!(dispatch(&core, frame.clone().freeze(), peer()).is_ok(), "the exact request is answered");
        frame.put_u8(0);
        let refused = dispatch(&core, frame.freeze(), peer()).err().expect("one extra byte is refused");
        assert!(refused.contains("left over"), "{refused}");
    }

    #[test]
    fn librdkafkas_padded_all_topics_metadata_request_is_answered_but_more_padding_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        // Metadata v12 for all topics exactly as librdkafka 2.x sends it: the body (null topics, two false flags,
        // no tags) and then three zero bytes.
        let mut frame = vec![0, 3, 0, 12, 0, 0, 0, 3, 0, 7];
        frame.extend_from_slice(b"rdkafka");
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(dispatch(&core, Bytes::from(frame.clone()), peer()).is_ok(), "librdkafka's request is answered");
        frame.push(0);
        assert!(dispatch(&core, Bytes::from(frame), peer()).is_err(), "a fourth byte is not padding we know");
    }

    proptest! {
        #[test]
        fn props_any_request_bytes_are_answered_or_refused_never_a_panic(
            key in prop::sample::select(SUPPORTED.iter().map(|(k, _, _)| *k as i16).collect::<Vec<_>>()),
            version in 0i16..14,
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let core = core(dir.path());
            let mut frame = BytesMut::new();
            frame.put_i16(key);
            frame.put_i16(version);
            frame.put_i32(1);
            frame.extend_from_slice(&body);
            if let Ok(answer) = dispatch(&core, frame.freeze(), peer()) {
                drop(answer);
            }
        }
    }
}
