//! The interim embedded broker: librdkafka's mock cluster, reachable at the `--listen` address.
//!
//! It stands in until franz's own durable broker lands: it keeps data in memory only (librdkafka caps it at about
//! 5 MiB per partition), and it cannot serve CreateTopics, so topics are created through its C API. The mock
//! listens on a random port of its own; a loopback forwarder accepts on `--listen` and the mock advertises that
//! address, so clients only ever see `--listen`. The `unsafe` of franz is confined to this file.

use std::ffi::{CStr, CString};
use std::net::SocketAddr;

use anyhow::{Context as _, anyhow};
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer as _};
use rdkafka_sys as sys;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::kafka::admin::TopicStatus;

/// A running mock cluster of one broker and the forwarder in front of it.
pub struct MockBroker {
    /// Owns the mock cluster: librdkafka destroys the cluster with this client. `None` only during drop.
    client: Option<BaseProducer>,
    cluster: *mut sys::rd_kafka_mock_cluster_t,
    address: SocketAddr,
    shutdown: CancellationToken,
}

// SAFETY: librdkafka's mock cluster API is thread-safe (every call takes the cluster lock or goes through its op
// queue), and `cluster` lives exactly as long as `client`, which this struct owns.
unsafe impl Send for MockBroker {}
unsafe impl Sync for MockBroker {}

/// The id librdkafka gives the single mock broker.
const BROKER_ID: i32 = 1;

impl MockBroker {
    /// Starts the mock cluster and the forwarder on `listen` (port 0 picks a free port). Both run until the
    /// returned value is dropped.
    pub async fn start(listen: SocketAddr) -> anyhow::Result<MockBroker> {
        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind(listen).await.map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => anyhow!(
                "{listen} is already in use (another franz or Kafka?); stop it, pass --listen with another port, or use it with --bootstrap {listen}"
            ),
            _ => anyhow!("cannot listen on {listen}: {error}"),
        })?;
        let address = listener.local_addr().context("the listener has no address")?;
        let client: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .set("log_level", "3")
            .create()
            .context("cannot start the embedded broker (librdkafka mock cluster)")?;
        // SAFETY: the client was created with a mock cluster, so the handle is valid for the client's lifetime.
        let cluster = unsafe { sys::rd_kafka_handle_mock_cluster(client.client().native_ptr()) };
        if cluster.is_null() {
            return Err(anyhow!("librdkafka did not create a mock cluster"));
        }
        // SAFETY: `cluster` is valid (above); the returned string is owned by the cluster and copied at once.
        let inner =
            unsafe { CStr::from_ptr(sys::rd_kafka_mock_cluster_bootstraps(cluster)) }.to_string_lossy().into_owned();
        let advertised_host =
            if address.ip().is_unspecified() { "127.0.0.1".to_owned() } else { address.ip().to_string() };
        let host = CString::new(advertised_host).expect("an IP address has no NUL byte");
        // SAFETY: `cluster` is valid; `host` outlives the call, which copies it.
        unsafe {
            sys::rd_kafka_mock_broker_set_host_port(cluster, BROKER_ID, host.as_ptr(), i32::from(address.port()));
            // A single node has no one to wait for: let a consumer group form at once, not after 3 s.
            sys::rd_kafka_mock_group_initial_rebalance_delay_ms(cluster, 0);
        }
        tokio::spawn(forward(listener, inner, shutdown.clone()));
        tracing::debug!(%address, "embedded stand-in broker listening");
        Ok(MockBroker { client: Some(client), cluster, address, shutdown })
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Creates the missing topics with `partitions` each.
    pub fn ensure_topics(&self, names: &[&str], partitions: i32) -> anyhow::Result<Vec<TopicStatus>> {
        let mut statuses = Vec::new();
        for name in names {
            let topic = CString::new(*name).with_context(|| format!("topic name {name:?} contains a NUL byte"))?;
            // SAFETY: `cluster` is valid while `self` lives; `topic` outlives the call.
            let code = unsafe { sys::rd_kafka_mock_topic_create(self.cluster, topic.as_ptr(), partitions, 1) };
            let created = match code {
                sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => true,
                sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS => false,
                other => {
                    return Err(anyhow!(
                        "cannot create topic {name}: {}",
                        rdkafka::error::RDKafkaErrorCode::from(other)
                    ));
                }
            };
            statuses.push(TopicStatus { name: (*name).to_owned(), partitions, created });
        }
        Ok(statuses)
    }

    /// Makes the broker answer the next `errors.len()` requests of one API with these errors, in order.
    /// For tests of what franz does when the broker refuses.
    pub fn fail_next_requests(&self, api: sys::types::RDKafkaApiKey, errors: &[sys::types::RDKafkaRespErr]) {
        // SAFETY: `cluster` is valid while `self` lives; librdkafka copies the array.
        unsafe { sys::rd_kafka_mock_push_request_errors_array(self.cluster, api as i16, errors.len(), errors.as_ptr()) }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        // Destroy the cluster while the forwarder still runs: the cluster's own client connects through it, and
        // librdkafka waits for that client's connections to wind down before it returns.
        if let Some(client) = self.client.take() {
            let _ = client.flush(std::time::Duration::from_millis(100));
            drop(client);
        }
        self.shutdown.cancel();
    }
}

/// Accepts on the public listener and pipes each connection to the mock broker until shutdown.
async fn forward(listener: TcpListener, inner: String, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let mut client = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "embedded broker: accept failed");
                continue;
            }
        };
        let inner = inner.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(mut upstream) = TcpStream::connect(&inner).await else {
                tracing::warn!("embedded broker: the mock cluster refused a connection");
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            }
        });
    }
}
