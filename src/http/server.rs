//! The API's connections: accepted, bounded and timed here, served by hyper with the axum
//! router.
//!
//! Contract: at most `max_connections` connections are open; a new one when full closes the
//! connection that has been waiting longest for its next request (one with a request in
//! progress is never closed; when all are busy the newcomer is refused), so idle and slow
//! clients cannot lock out `/healthz`. A request head must arrive within `header_timeout`
//! (idle keep-alive time included: hyper's header read timeout); an answer within
//! `request_timeout` (else 503); one client address has at most `per_client` requests in
//! progress (more get 429; `/healthz` is exempt). TLS handshakes run in the connection's own
//! task with their own timeout, never in the accept loop. Every refusal is counted
//! (`SERVER_STATS`).

use super::HttpConfig;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Connection and request limits of the API (from `[http]`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub per_client: usize,
}

impl Limits {
    pub fn from_config(h: &HttpConfig) -> Limits {
        Limits {
            max_connections: h.max_connections.max(1),
            header_timeout: Duration::from_secs(h.header_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(h.request_timeout_secs.max(1)),
            per_client: h.max_requests_per_client.max(1),
        }
    }
}

/// Counters of the API server, exported in `/metrics`.
#[derive(Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
    /// Connections closed to make room for a new one (they were waiting for a request).
    pub evicted: AtomicU64,
    /// New connections refused because every open one had a request in progress.
    pub refused: AtomicU64,
    pub open: AtomicU64,
    /// Requests answered 429 (client over `max_requests_per_client`) and 503 (timeout).
    pub over_client_limit: AtomicU64,
    pub timed_out: AtomicU64,
    pub tls_failed: AtomicU64,
}

pub static SERVER_STATS: ServerStats = ServerStats {
    accepted: AtomicU64::new(0),
    evicted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    open: AtomicU64::new(0),
    over_client_limit: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
    tls_failed: AtomicU64::new(0),
};

/// One open connection: requests in progress, and how to close it.
struct Conn {
    busy: AtomicUsize,
    close: tokio::sync::Notify,
}

/// Open connections by age (ids grow).
#[derive(Default)]
struct Conns {
    next: u64,
    open: BTreeMap<u64, Arc<Conn>>,
}

impl Conns {
    /// Registers a new connection, closing the oldest idle one when full; `None`: refused.
    fn admit(&mut self, max: usize) -> Option<(u64, Arc<Conn>)> {
        if self.open.len() >= max {
            let victim = self
                .open
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some(c) = self.open.remove(&victim) {
                c.close.notify_one();
                SERVER_STATS.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let id = self.next;
        self.next += 1;
        let c = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            close: tokio::sync::Notify::new(),
        });
        self.open.insert(id, c.clone());
        Some((id, c))
    }
}

/// Removes a connection from the table however its task ends.
struct ConnGuard {
    conns: Arc<Mutex<Conns>>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut c) = self.conns.lock() {
            c.open.remove(&self.id);
        }
        SERVER_STATS.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Requests in progress per client address.
type PerClient = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Releases a client's request slot and the connection's busy mark.
struct RequestGuard {
    clients: PerClient,
    ip: IpAddr,
    conn: Arc<Conn>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.clients.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

fn plain(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::from(format!("{{\"error\":\"{msg}\"}}")));
    *r.status_mut() = status;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves `app` on `listener` until `stop` is notified.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    stop: Arc<tokio::sync::Notify>,
) {
    let conns: Arc<Mutex<Conns>> = Arc::default();
    let clients: PerClient = Arc::default();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stopped => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admitted = conns
            .lock()
            .ok()
            .and_then(|mut c| c.admit(limits.max_connections));
        let Some((id, conn)) = admitted else {
            SERVER_STATS.refused.fetch_add(1, Ordering::Relaxed);
            drop(tcp);
            continue;
        };
        SERVER_STATS.accepted.fetch_add(1, Ordering::Relaxed);
        SERVER_STATS.open.fetch_add(1, Ordering::Relaxed);
        let guard = ConnGuard {
            conns: conns.clone(),
            id,
        };
        let (app, clients, acceptor) = (app.clone(), clients.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _guard = guard;
            let _ = tcp.set_nodelay(true);
            let close = conn.close.notified();
            tokio::pin!(close);
            match acceptor {
                Some(acc) => {
                    let hs = tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, acc.accept(tcp));
                    let tls = tokio::select! {
                        _ = &mut close => return,
                        r = hs => r,
                    };
                    match tls {
                        Ok(Ok(io)) => {
                            serve_conn(io, peer, app, conn.clone(), clients, limits, close).await
                        }
                        _ => {
                            SERVER_STATS.tls_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%peer, "API TLS handshake failed or timed out");
                        }
                    }
                }
                None => serve_conn(tcp, peer, app, conn.clone(), clients, limits, close).await,
            }
        });
    }
}

async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    conn: Arc<Conn>,
    clients: PerClient,
    limits: Limits,
    close: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(app);
    let ip = peer.ip();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let (svc, clients, conn) = (svc.clone(), clients.clone(), conn.clone());
        async move {
            conn.busy.fetch_add(1, Ordering::AcqRel);
            let exempt = req.uri().path() == "/healthz";
            let admitted = match clients.lock() {
                Ok(mut m) => {
                    let n = m.entry(ip).or_insert(0);
                    if *n >= limits.per_client && !exempt {
                        false
                    } else {
                        *n += 1;
                        true
                    }
                }
                Err(_) => false,
            };
            if !admitted {
                conn.busy.fetch_sub(1, Ordering::AcqRel);
                SERVER_STATS
                    .over_client_limit
                    .fetch_add(1, Ordering::Relaxed);
                return Ok::<_, std::convert::Infallible>(plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many requests in progress from this address",
                ));
            }
            let _slot = RequestGuard { clients, ip, conn };
            let call = hyper::service::Service::call(&svc, req);
            match tokio::time::timeout(limits.request_timeout, call).await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(never)) => match never {},
                Err(_) => {
                    SERVER_STATS.timed_out.fetch_add(1, Ordering::Relaxed);
                    Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "request timed out"))
                }
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(64 * 1024);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = close => {}
        r = served => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_closes_the_oldest_idle_connection_never_a_busy_one() {
        let mut c = Conns::default();
        let (a, ca) = c.admit(2).unwrap();
        let (_b, cb) = c.admit(2).unwrap();
        ca.busy.store(1, Ordering::Release);
        // Full: the oldest idle one (b) goes, the busy one (a) stays.
        let (_n, _) = c.admit(2).unwrap();
        assert!(c.open.contains_key(&a));
        assert_eq!(c.open.len(), 2);
        drop(cb);
        // All busy: refused.
        for conn in c.open.values() {
            conn.busy.store(1, Ordering::Release);
        }
        assert!(c.admit(2).is_none());
    }
}
