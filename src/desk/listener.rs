//! The desk's listener and what it bounds: every client is untrusted. At most [`MAX_CONNECTIONS`] connections at
//! once (past that a new one is closed at once, so the desk cannot take the file handles the broker needs), and at
//! most [`MAX_PER_CLIENT`] from one address other than loopback (a reverse proxy on the same machine brings the
//! whole team from loopback, and should limit its clients itself). A request's head must arrive within
//! [`HEAD_TIMEOUT`] (an idle or half-sent connection is closed), a whole request within [`REQUEST_TIMEOUT`], and a
//! client that stops reading what the desk sends (pipelined requests never read, a live stream left unread) is
//! dropped after [`WRITE_STALL`], so no client can hold a connection without taking part in it.

use std::future::Future as _;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::tally::{Held, Tally};

/// Connections the desk holds at once.
pub const MAX_CONNECTIONS: usize = 512;
/// Connections one client address (other than loopback) holds at once.
pub const MAX_PER_CLIENT: usize = 64;
/// How long a client may take to send a request's head, and how long a connection may idle between requests.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take in all (a command waits up to 10 s for akte).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the desk waits for a client to take what it sends before it drops the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in progress.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves `router` on `listener` until `shutdown` is cancelled, then finishes the requests in progress (for at
/// most [`DRAIN_TIMEOUT`]), within the bounds above.
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let clients = Clients::default();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // HTTP/1.1 only: its head timeout runs from the moment a connection is accepted or goes idle.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEAD_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file handles, most likely: wait a little rather than spin.
                    tracing::warn!("the desk cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("the desk has {MAX_CONNECTIONS} connections; closing a new one");
            continue;
        };
        let Some(client) = admit(&clients, peer.ip()) else {
            tracing::debug!("{} has {MAX_PER_CLIENT} connections to the desk; closing a new one", peer.ip());
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let stream = hyper_util::rt::TokioIo::new(Stalling { stream, stalled: None });
        let connection = graceful.watch(builder.serve_connection(stream, service));
        tokio::spawn(async move {
            let (_permit, _client) = (permit, client);
            if let Err(error) = connection.await {
                tracing::debug!("a desk connection ended: {error}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("the desk stopped with requests still open after {DRAIN_TIMEOUT:?}");
    }
    Ok(())
}

/// Connections per client address.
type Clients = Tally<IpAddr>;
type Admitted = Held<IpAddr>;

/// Counts a new connection from `ip`, unless it has [`MAX_PER_CLIENT`] already (loopback is not limited).
fn admit(clients: &Clients, ip: IpAddr) -> Option<Admitted> {
    clients.take(ip, |held, _| if held >= MAX_PER_CLIENT && !ip.is_loopback() { Err(()) } else { Ok(()) }).ok()
}

/// A connection whose writes fail once the client has taken nothing for [`WRITE_STALL`].
struct Stalling {
    stream: TcpStream,
    /// Runs while a write waits for the client.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stalling {
    /// Called when a write cannot go on: waits, unless the client has kept it waiting too long.
    fn stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progress<T>(&mut self, result: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending => self.stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.progress(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.progress(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.stream).poll_flush(cx);
        self.progress(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_address_other_than_loopback_holds_a_bounded_number_of_connections() {
        let clients = Clients::default();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        let held: Vec<Admitted> = (0..MAX_PER_CLIENT).map(|_| admit(&clients, remote).unwrap()).collect();
        assert!(admit(&clients, remote).is_none());
        assert!(admit(&clients, "192.0.2.8".parse().unwrap()).is_some(), "another client is not affected");
        let local: Vec<Admitted> =
            (0..MAX_PER_CLIENT + 1).map(|_| admit(&clients, "127.0.0.1".parse().unwrap()).unwrap()).collect();
        drop(held);
        assert!(admit(&clients, remote).is_some(), "closed connections make room");
        drop(local);
    }
}
