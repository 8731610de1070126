//! The HTTP server: poem's endpoint served by hyper, with the limits poem's own server lacks.
//!
//! poem's `Server` has only an inactivity timeout, which a client defeats by sending a byte now
//! and then, and no connection cap, so anyone could hold every descriptor with unfinished
//! requests. Here each connection is watched:
//!
//! - from accepting it, or from the end of a response, the client has `header_read` to send the
//!   next request's headers once it starts sending anything, and `keep_alive_idle` to start;
//! - a request's body must arrive within the body timeout (enforced in the request plumbing,
//!   which then asks for the connection to be closed without an answer);
//! - at most `max_connections` are open: at the cap, a new connection closes the connection
//!   that has waited longest without a request in flight, or is refused when every connection
//!   is busy, so idle connections can never lock out a client with something to ask.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aimc_api::CloseConnection;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt, IntoResponse};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Limits on what a client may hold open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read: Duration,
    pub keep_alive_idle: Duration,
    pub max_connections: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

/// How often connections are checked against their timeouts; a timeout fires at most this
/// late.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What the server knows about one connection, shared by its I/O, its requests and the sweeper.
struct Connection {
    /// Requests being answered now.
    active: AtomicUsize,
    /// Milliseconds since the server's epoch at the last byte read, request or response.
    last_activity: AtomicU64,
    /// When the client started on its next request's headers (or connected); 0 while a request
    /// is being answered or the connection sits idle after a response.
    awaiting_headers_since: AtomicU64,
    close: Notify,
}

struct Clock(Instant);

impl Clock {
    /// Never 0, which `awaiting_headers_since` reserves for "not waiting".
    fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

impl Connection {
    fn new(now: u64) -> Self {
        Connection {
            active: AtomicUsize::new(0),
            last_activity: AtomicU64::new(now),
            awaiting_headers_since: AtomicU64::new(now),
            close: Notify::new(),
        }
    }

    fn read_something(&self, now: u64) {
        self.last_activity.store(now, Ordering::Relaxed);
        if self.active.load(Ordering::Acquire) == 0 {
            let _ = self.awaiting_headers_since.compare_exchange(
                0,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    fn begin_request(&self, now: u64) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.awaiting_headers_since.store(0, Ordering::Release);
        self.last_activity.store(now, Ordering::Relaxed);
    }

    fn end_request(&self, now: u64) {
        self.last_activity.store(now, Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::AcqRel);
    }

    /// Why this connection should be closed now, if it should.
    fn overdue(&self, now: u64, limits: &ConnectionLimits) -> Option<&'static str> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.awaiting_headers_since.load(Ordering::Acquire);
        if since != 0 {
            (now.saturating_sub(since) > limits.header_read.as_millis() as u64)
                .then_some("no complete request headers in time")
        } else {
            let idle = now.saturating_sub(self.last_activity.load(Ordering::Relaxed));
            (idle > limits.keep_alive_idle.as_millis() as u64).then_some("idle keep-alive")
        }
    }

    /// Orders eviction candidates: a connection that never finished its headers first, then the
    /// one idle longest.
    fn eviction_rank(&self) -> Option<(bool, u64)> {
        if self.active.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.awaiting_headers_since.load(Ordering::Acquire);
        Some(if since != 0 {
            (false, since)
        } else {
            (true, self.last_activity.load(Ordering::Relaxed))
        })
    }
}

/// Every open connection, by number.
struct Connections {
    clock: Clock,
    limits: ConnectionLimits,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Connections {
    /// Registers a new connection, making room at the cap; None when every connection is busy.
    fn admit(&self, id: u64) -> Option<Arc<Connection>> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() >= self.limits.max_connections {
            let victim = open
                .iter()
                .filter_map(|(id, connection)| connection.eviction_rank().map(|rank| (rank, *id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(victim) = open.remove(&victim) {
                tracing::info!(
                    "connection cap reached; closing the longest-waiting idle connection"
                );
                victim.close.notify_one();
            }
        }
        let connection = Arc::new(Connection::new(self.clock.now()));
        open.insert(id, connection.clone());
        Some(connection)
    }

    fn release(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&id);
    }

    fn sweep(&self) {
        let now = self.clock.now();
        let open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for connection in open.values() {
            if let Some(reason) = connection.overdue(now, &self.limits) {
                tracing::debug!(reason, "closing a connection");
                connection.close.notify_one();
            }
        }
    }
}

/// A socket that reports what it reads to its [`Connection`].
struct Watched {
    inner: TcpStream,
    connection: Arc<Connection>,
    connections: Arc<Connections>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.connection.read_something(self.connections.clock.now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Counts a request as in flight on its connection until it is answered.
struct InFlight {
    connection: Arc<Connection>,
    connections: Arc<Connections>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connection.end_request(self.connections.clock.now());
    }
}

/// Serves `endpoint` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for at most the grace period.
pub async fn serve(
    listener: TcpListener,
    endpoint: impl Endpoint + 'static,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let endpoint = Arc::new(endpoint.map_to_response());
    let local = LocalAddr(Addr::SocketAddr(listener.local_addr()?));
    let connections = Arc::new(Connections {
        clock: Clock(Instant::now()),
        limits,
        open: Mutex::new(HashMap::new()),
    });
    let stopping = Arc::new(tokio::sync::watch::channel(false).0);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);

    let sweeper = tokio::spawn({
        let connections = connections.clone();
        async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                connections.sweep();
            }
        }
    });

    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a connection reset before it was accepted: keep
                    // serving the connections already open, and try again shortly.
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while tasks.try_join_next().is_some() {}
        next_id += 1;
        let id = next_id;
        let Some(connection) = connections.admit(id) else {
            tracing::warn!("connection cap reached and every connection is busy; refusing one");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Watched {
            inner: stream,
            connection: connection.clone(),
            connections: connections.clone(),
        };
        let service = {
            let endpoint = endpoint.clone();
            let connection = connection.clone();
            let connections = connections.clone();
            let local = local.clone();
            let remote = RemoteAddr(Addr::SocketAddr(peer));
            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let endpoint = endpoint.clone();
                let local = local.clone();
                let remote = remote.clone();
                connection.begin_request(connections.clock.now());
                let in_flight = InFlight {
                    connection: connection.clone(),
                    connections: connections.clone(),
                };
                async move {
                    let request = poem::Request::from((
                        request,
                        local,
                        remote,
                        poem::http::uri::Scheme::HTTP,
                    ));
                    let response = endpoint.get_response(request).await.into_response();
                    drop(in_flight);
                    if response.data::<CloseConnection>().is_some() {
                        return Err(std::io::Error::other("closing a stalled connection"));
                    }
                    Ok(hyper::Response::<BoxBody<Bytes, std::io::Error>>::from(
                        response,
                    ))
                }
            })
        };
        let builder = builder.clone();
        let connections = connections.clone();
        let mut stopping = stopping.subscribe();
        tasks.spawn(async move {
            let served = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(served);
            let drain = tokio::select! {
                _ = served.as_mut() => false,
                // Overdue or evicted: nothing is in flight, so nothing is lost by dropping it.
                () = connection.close.notified() => false,
                _ = stopping.wait_for(|stopping| *stopping) => true,
            };
            if drain {
                served.as_mut().graceful_shutdown();
                let _ = served.await;
            }
            connections.release(id);
        });
    }

    drop(listener);
    sweeper.abort();
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len() as i64,
            "shutdown grace period over; closing the remaining connections"
        );
        tasks.abort_all();
    }
    Ok(())
}
