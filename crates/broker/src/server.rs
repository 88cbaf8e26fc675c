//! The network side: accepting connections, framing, version negotiation, dispatch, and writing answers in order.
//!
//! Each connection has a reader (frames in, handlers called in arrival order) and a writer (answers out in the
//! same order, each awaited in turn), joined by a bounded queue so a slow client slows only itself. A frame over
//! the size limit is refused before anything is allocated for it; a malformed request closes that connection
//! with a log line. Nothing a client sends can panic the broker: decoding runs under `catch_unwind` as a last
//! line of defence.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Core;
use super::handlers::Pending;

/// The APIs and versions the broker implements, and advertises through ApiVersions.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
];

/// Answers queued per connection before its reader waits for the writer.
const QUEUED_ANSWERS: usize = 64;
const UNSUPPORTED_VERSION: i16 = 35;

fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(k, min, max)| *k == key && (*min..=*max).contains(&version))
}

/// Accepts connections until `shutdown`, at most `max_connections` at a time.
pub async fn serve(listener: TcpListener, core: Arc<Core>, shutdown: CancellationToken, tracker: TaskTracker) {
    let permits = Arc::new(Semaphore::new(core.settings.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = core.settings.max_connections, "connection limit reached; closing the new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let core = core.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                result = connection(stream, peer, core) => if let Err(reason) = result {
                    tracing::warn!(%peer, "closing the connection: {reason}");
                },
                _ = shutdown.cancelled() => {}
            }
            drop(permit);
        });
    }
}

/// What goes back for one request.
pub enum Reply {
    /// A response frame.
    Frame(Bytes),
    /// No answer (`acks=0`).
    Nothing,
    /// Close the connection instead of answering.
    HangUp,
}

/// An answer in the making.
type Answer = BoxFuture<'static, Reply>;

async fn connection(stream: TcpStream, peer: SocketAddr, core: Arc<Core>) -> Result<(), String> {
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut answers) = mpsc::channel::<Answer>(QUEUED_ANSWERS);
    let write = async move {
        while let Some(answer) = answers.recv().await {
            match answer.await {
                Reply::Frame(frame) if writer.write_all(&frame).await.is_ok() => {}
                Reply::Nothing => {}
                Reply::Frame(_) | Reply::HangUp => return,
            }
        }
    };
    let read = async move {
        loop {
            let mut length = [0u8; 4];
            match reader.read_exact(&mut length).await {
                Ok(_) => {}
                // A client going away, politely or not, is not worth a warning.
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    return Ok(());
                }
                Err(error) => return Err(format!("read failed: {error}")),
            }
            let length = i32::from_be_bytes(length);
            if length < 8 || length as usize > core.settings.max_frame_bytes {
                return Err(format!(
                    "a request of {length} bytes is outside 8..={} (max_frame_bytes)",
                    core.settings.max_frame_bytes
                ));
            }
            // Read into uninitialised capacity: zeroing megabytes of produce data first would cost as much as
            // reading it.
            let mut frame = BytesMut::with_capacity(length as usize);
            let mut body = (&mut reader).take(length as u64);
            while frame.len() < length as usize {
                match body.read_buf(&mut frame).await {
                    Ok(0) => return Err("request cut short: the connection closed".into()),
                    Ok(_) => {}
                    Err(error) => return Err(format!("request cut short: {error}")),
                }
            }
            let answer = dispatch(&core, frame.freeze(), peer)?;
            if queue.send(answer).await.is_err() {
                return Ok(());
            }
        }
    };
    // The connection ends when either side does: a reader error, or the writer hanging up.
    tokio::select! {
        result = read => result,
        () = write => Ok(()),
    }
}

/// Decodes one request and starts handling it. An `Err` closes the connection.
pub fn dispatch(core: &Arc<Core>, mut frame: Bytes, _peer: SocketAddr) -> Result<Answer, String> {
    let raw_key = frame.slice(0..2).get_i16();
    let version = frame.slice(2..4).get_i16();
    let key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    if key == ApiKey::ApiVersions && !supported(key, version) {
        // A client newer than us: answer in version 0 with the error and our versions, so it can retry lower.
        // Only the correlation id is read: the rest of a newer header is not ours to understand.
        let correlation_id = frame.slice(4..8).get_i32();
        let body = api_versions(UNSUPPORTED_VERSION);
        return Ok(ready(encode(correlation_id, key, 0, &body)));
    }
    if !supported(key, version) {
        return Err(format!("{key:?} version {version} is not supported (see ApiVersions)"));
    }
    let header_version = key.request_header_version(version);
    let header = decode_guarded(|| RequestHeader::decode(&mut frame, header_version))?;
    let id = header.correlation_id;
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    macro_rules! decode {
        ($type:ty) => {
            decode_guarded(|| <$type>::decode(&mut frame, version))?
        };
    }
    let answer = match key {
        ApiKey::ApiVersions => {
            let _ = decode!(ApiVersionsRequest);
            ready(encode(id, key, version, &api_versions(0)))
        }
        ApiKey::Metadata => ready(encode(id, key, version, &core.metadata(decode!(MetadataRequest), version))),
        ApiKey::CreateTopics => {
            ready(encode(id, key, version, &core.create_topics(decode!(CreateTopicsRequest), version)))
        }
        ApiKey::DeleteTopics => {
            ready(encode(id, key, version, &core.delete_topics(decode!(DeleteTopicsRequest), version)))
        }
        ApiKey::Produce => pending(id, key, version, core.produce(decode!(ProduceRequest), version)),
        ApiKey::Fetch => pending(id, key, version, core.fetch(decode!(FetchRequest), version)),
        ApiKey::ListOffsets => {
            ready(encode(id, key, version, &core.list_offsets(decode!(ListOffsetsRequest), version)))
        }
        ApiKey::FindCoordinator => {
            ready(encode(id, key, version, &core.find_coordinator(decode!(FindCoordinatorRequest), version)))
        }
        ApiKey::InitProducerId => {
            ready(encode(id, key, version, &core.init_producer_id(decode!(InitProducerIdRequest))))
        }
        ApiKey::JoinGroup => pending(id, key, version, core.join_group(decode!(JoinGroupRequest), client_id)),
        ApiKey::SyncGroup => pending(id, key, version, core.sync_group(decode!(SyncGroupRequest))),
        ApiKey::Heartbeat => ready(encode(id, key, version, &core.heartbeat(decode!(HeartbeatRequest)))),
        ApiKey::LeaveGroup => ready(encode(id, key, version, &core.leave_group(decode!(LeaveGroupRequest), version))),
        ApiKey::OffsetCommit => pending(id, key, version, core.offset_commit(decode!(OffsetCommitRequest))),
        ApiKey::OffsetFetch => {
            ready(encode(id, key, version, &core.offset_fetch(decode!(OffsetFetchRequest), version)))
        }
        ApiKey::ListGroups => ready(encode(id, key, version, &core.list_groups(decode!(ListGroupsRequest), version))),
        ApiKey::DescribeGroups => {
            ready(encode(id, key, version, &core.describe_groups(decode!(DescribeGroupsRequest))))
        }
        other => return Err(format!("{other:?} is not supported")),
    };
    Ok(answer)
}

/// Runs a decoder, turning both its errors and any panic inside it into a message.
fn decode_guarded<T>(decode: impl FnOnce() -> anyhow::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(AssertUnwindSafe(decode)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(format!("malformed request: {error:#}")),
        Err(_) => Err("malformed request (the decoder gave up)".into()),
    }
}

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| {
            api_versions_response::ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(keys)
}

fn ready(frame: Option<Bytes>) -> Answer {
    futures::future::ready(frame.map_or(Reply::HangUp, Reply::Frame)).boxed()
}

fn pending<T: Encodable + HeaderVersion + Send + 'static>(
    id: i32,
    key: ApiKey,
    version: i16,
    answer: Pending<T>,
) -> Answer {
    match answer {
        Pending::Now(body) => ready(encode(id, key, version, &body)),
        Pending::Later(future) => {
            future.map(move |body| encode(id, key, version, &body).map_or(Reply::HangUp, Reply::Frame)).boxed()
        }
        Pending::Silent => futures::future::ready(Reply::Nothing).boxed(),
        Pending::HangUp => futures::future::ready(Reply::HangUp).boxed(),
    }
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
    use super::*;
    use proptest::prelude::*;

    fn core(dir: &std::path::Path) -> Arc<Core> {
        let settings = super::super::Settings::new("127.0.0.1:9092".parse().unwrap(), dir.to_path_buf());
        Arc::new(super::super::open(settings, "127.0.0.1:9092".parse().unwrap()).unwrap())
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
        let Reply::Frame(answer) = futures::executor::block_on(dispatch(&core, frame.freeze(), peer()).unwrap()) else {
            panic!("ApiVersions is answered");
        };
        let mut body = answer.slice(4..);
        assert_eq!(body.get_i32(), 7, "correlation id");
        let response = ApiVersionsResponse::decode(&mut body, 0).unwrap();
        assert_eq!(response.error_code, UNSUPPORTED_VERSION);
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
