//! HTTP API of the daemon (and of `simboxd central`): alerts, lines, threats, evidence, health
//! and Prometheus metrics.
//!
//! Contract: `/healthz` is open; everything else needs `Authorization: Bearer <token>` matching
//! `[http] token` (or the file named by `token_file`), compared in constant time. Without a
//! configured token every protected route answers 401, so the API is closed by default. The
//! routes only read what an `ApiSource` hands them; they never touch the pipeline directly.
//! Evidence files are served only by the name their manifest lists, from their alert's folder,
//! and only the bytes the manifest hashed.
//! Lists take `limit` and `offset`. Connections are bounded and timed by `server`.

pub mod server;
pub mod tls;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// `[http]`: where the API listens and the token it requires.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the API at all.
    pub enabled: bool,
    /// Listen address; loopback by default.
    pub listen: SocketAddr,
    /// Bearer token for `/api/v1/*` and `/metrics` (at least 16 characters).
    pub token: Option<String>,
    /// File holding the token (first line), e.g. a systemd credential; instead of `token`.
    pub token_file: Option<PathBuf>,
    /// Most entries one listing returns (`?limit=` is capped to this).
    pub max_list: usize,
    /// PEM certificate chain: with `tls_key`, the API is served over TLS (see `tls`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Open connections at most; when full, the connection waiting longest for its next
    /// request is closed to make room (so idle or slow clients cannot lock others out).
    pub max_connections: usize,
    /// Seconds a connection may take to send a complete request head, idle keep-alive time
    /// included (slow or silent clients are closed after it).
    pub header_timeout_secs: u64,
    /// Seconds a request may take to be answered (then 503).
    pub request_timeout_secs: u64,
    /// Requests of one client address in progress at once (more are answered 429).
    pub max_requests_per_client: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            token_file: None,
            max_list: 1000,
            tls_cert: None,
            tls_key: None,
            max_connections: 512,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_requests_per_client: 8,
        }
    }
}

/// Shortest token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl HttpConfig {
    /// Checks values serde cannot: the offending key and the reason.
    pub fn validate(&self) -> Result<(), simboxd_core::config::Invalid> {
        use simboxd_core::config::Invalid;
        if let Some(t) = &self.token {
            if let Err(why) = check_token(t) {
                return Err(Invalid::new("token", format!("http.token {why}")));
            }
            if self.token_file.is_some() {
                return Err(Invalid::new(
                    "token_file",
                    "http.token and http.token_file are mutually exclusive".to_string(),
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(Invalid::new(
                "max_connections",
                "http.max_connections must be between 1 and 1000000".to_string(),
            ));
        }
        if !(1..=3600).contains(&self.header_timeout_secs) {
            return Err(Invalid::new(
                "header_timeout_secs",
                "http.header_timeout_secs must be between 1 and 3600".to_string(),
            ));
        }
        if !(1..=3600).contains(&self.request_timeout_secs) {
            return Err(Invalid::new(
                "request_timeout_secs",
                "http.request_timeout_secs must be between 1 and 3600".to_string(),
            ));
        }
        if self.max_requests_per_client == 0 {
            return Err(Invalid::new(
                "max_requests_per_client",
                "http.max_requests_per_client must be at least 1".to_string(),
            ));
        }
        if self.max_list == 0 {
            return Err(Invalid::new(
                "max_list",
                "http.max_list must be at least 1".to_string(),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(Invalid::new(
                "tls_cert",
                "http.tls_cert needs http.tls_key".to_string(),
            )),
            (None, Some(_)) => Err(Invalid::new(
                "tls_key",
                "http.tls_key needs http.tls_cert".to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// The token to require: from `token`, else the first line of `token_file`, else the
    /// systemd credential `api-token` (`LoadCredential=api-token:...`, read from
    /// `$CREDENTIALS_DIRECTORY`) when there is one. A file must be a regular file of at most
    /// `MAX_SECRET_FILE` bytes.
    pub fn resolve_token(&self) -> Result<Option<String>, String> {
        if let Some(t) = &self.token {
            return Ok(Some(t.clone()));
        }
        let credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|d| PathBuf::from(d).join(TOKEN_CREDENTIAL))
            .filter(|p| p.exists());
        let Some(path) = self.token_file.as_ref().or(credential.as_ref()) else {
            return Ok(None);
        };
        let text =
            read_secret_file(path).map_err(|e| format!("cannot read http.token_file {e}"))?;
        let t = text.lines().next().unwrap_or("").trim().to_string();
        check_token(&t).map_err(|why| format!("{}: token {why}", path.display()))?;
        Ok(Some(t))
    }
}

/// Name of the systemd credential holding the API token (`LoadCredential=api-token:FILE`).
pub const TOKEN_CREDENTIAL: &str = "api-token";

/// Largest secret file (token, key) read; anything bigger is not a token (`/dev/zero` would
/// otherwise be read forever).
pub const MAX_SECRET_FILE: u64 = 4096;

/// Reads a small secret file: a regular file of at most `MAX_SECRET_FILE` bytes. Checked on the
/// metadata first, so that a FIFO or device is refused without opening it.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "{}: {} bytes, more than the {MAX_SECRET_FILE} a secret file may have",
            path.display(),
            meta.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

fn check_token(t: &str) -> Result<(), String> {
    if t.chars().count() < MIN_TOKEN_LEN {
        return Err(format!("must be at least {MIN_TOKEN_LEN} characters"));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".to_string());
    }
    Ok(())
}

/// What the API shows, supplied by the running daemon (or a test).
pub trait ApiSource: Send + Sync + 'static {
    /// Recent alerts, newest first, at most `limit` after skipping `offset`, optionally only
    /// those in `state`.
    fn alerts(&self, limit: usize, offset: usize, state: Option<&str>) -> serde_json::Value;
    /// Lines, flagged (highest verdict, then score) first, at most `limit` after skipping
    /// `offset`; `total` counts them all.
    fn lines(&self, limit: usize, offset: usize) -> serde_json::Value;
    /// One line's profile, verdict, signals and recent calls; `None` when unknown.
    fn line(&self, addr: IpAddr) -> Option<serde_json::Value>;
    /// Attacks on lines found so far (highest severity first), at most `limit` after `offset`.
    fn threats(&self, limit: usize, offset: usize) -> serde_json::Value {
        let _ = (limit, offset);
        serde_json::json!({ "threats": [], "total": 0 })
    }
    /// Evidence folders of flagged lines, newest first, at most `limit`; `None` when
    /// `[evidence]` is disabled.
    fn evidence_list(&self, limit: usize) -> Option<serde_json::Value> {
        let _ = limit;
        None
    }
    /// The manifest of one alert's evidence; `None` when there is none.
    fn evidence_manifest(&self, id: &str) -> Option<serde_json::Value> {
        let _ = id;
        None
    }
    /// A file that manifest lists, and how many of its bytes it lists (serve exactly those).
    fn evidence_file(&self, id: &str, name: &str) -> Option<(PathBuf, u64)> {
        let _ = (id, name);
        None
    }
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// `Err(reason)` when the daemon is not healthy (capture thread dead, engine stuck, alert
    /// store not writable).
    fn health(&self) -> Result<(), String>;
    /// Alerts receivers refused for good (dead-letter lists), oldest first, at most `limit`.
    fn dead_letters(&self, limit: usize) -> serde_json::Value {
        let _ = limit;
        serde_json::json!({ "dead_letters": [], "total": 0 })
    }
    /// Re-queues dead-lettered alerts (all, or of one target and/or idempotency key).
    fn retry_dead_letters(
        &self,
        target: Option<&str>,
        key: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let _ = (target, key);
        Ok(serde_json::json!({ "requeued": 0 }))
    }
}

/// The token as its SHA-256, so that the comparison is constant-time whatever the lengths.
#[derive(Clone, Default)]
pub struct TokenCheck(Option<[u8; 32]>);

impl TokenCheck {
    pub fn new(token: Option<&str>) -> Self {
        TokenCheck(token.map(|t| Sha256::digest(t.as_bytes()).into()))
    }
    /// Whether `presented` is the token. Always false when no token is configured.
    pub fn accepts(&self, presented: &str) -> bool {
        let Some(want) = &self.0 else { return false };
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let diff = want
            .iter()
            .zip(got.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

/// State shared by the routes. The token can be swapped on reload.
pub struct Api {
    pub token: RwLock<TokenCheck>,
    pub max_list: usize,
    pub source: Arc<dyn ApiSource>,
}

/// `/api/v1/alerts` from an alert outbox (the daemon's and the central's): newest first, at most
/// `limit` after `offset`, optionally only those in `state` (looked for among the newest 1000),
/// each with the targets it is still `pending` for; `total` counts the stored records.
pub fn alert_listing(
    outbox: &crate::alert::outbox::Outbox,
    limit: usize,
    offset: usize,
    state: Option<&str>,
) -> serde_json::Value {
    let scan = if state.is_some() {
        1000
    } else {
        limit.saturating_add(offset)
    };
    let entries = match outbox.list(scan) {
        Ok(e) => e,
        Err(e) => return serde_json::json!({ "alerts": [], "error": e.to_string() }),
    };
    let alerts: Vec<serde_json::Value> = entries
        .into_iter()
        .filter(|e| state.is_none_or(|s| e.alert.state.as_str() == s))
        .skip(offset)
        .take(limit)
        .map(|e| {
            let mut v = serde_json::to_value(&e.alert).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("pending".into(), serde_json::json!(e.pending));
            }
            v
        })
        .collect();
    let total = outbox.len().unwrap_or(0);
    serde_json::json!({ "alerts": alerts, "total": total, "offset": offset })
}

pub fn router(api: Arc<Api>) -> Router {
    let protected = Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/dead-letter", get(dead_letters))
        .route(
            "/api/v1/alerts/dead-letter/retry",
            axum::routing::post(retry_dead_letters),
        )
        .route("/api/v1/lines", get(lines))
        .route("/api/v1/lines/{addr}", get(line))
        .route("/api/v1/threats", get(threats))
        .route("/api/v1/evidence", get(evidence_list))
        .route("/api/v1/evidence/{id}", get(evidence_manifest))
        .route("/api/v1/evidence/{id}/{file}", get(evidence_file))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .fallback(not_found)
        .with_state(api)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn require_token(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    let presented = bearer(req.headers());
    let ok = match (presented, api.token.read()) {
        (Some(p), Ok(check)) => check.accepts(p),
        _ => false,
    };
    if ok {
        return next.run(req).await;
    }
    let mut resp = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"simboxd\""),
    );
    resp
}

/// The token after `Bearer ` (scheme case-insensitive, RFC 6750).
fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

async fn healthz(State(api): State<Arc<Api>>) -> Response {
    match api.source.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    /// Entries to skip (pagination: `offset=limit*page`).
    offset: Option<usize>,
    state: Option<String>,
}

fn limit(api: &Api, q: &ListQuery) -> usize {
    q.limit
        .unwrap_or(api.max_list)
        .clamp(1, api.max_list.max(1))
}

/// Runs a source call on the blocking pool: sources lock engine tables and read the outbox.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

fn internal() -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

async fn alerts(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let n = limit(&api, &q);
    let skip = q.offset.unwrap_or(0);
    match off_runtime(move || api.source.alerts(n, skip, q.state.as_deref())).await {
        Some(v) => Json(v).into_response(),
        None => internal(),
    }
}

async fn dead_letters(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let n = limit(&api, &q);
    match off_runtime(move || api.source.dead_letters(n)).await {
        Some(v) => Json(v).into_response(),
        None => internal(),
    }
}

#[derive(Deserialize)]
struct RetryQuery {
    /// Only this target's list (its URL, as in `/metrics` and the dead-letter listing).
    target: Option<String>,
    /// Only the alert with this idempotency key.
    key: Option<String>,
}

async fn retry_dead_letters(State(api): State<Arc<Api>>, Query(q): Query<RetryQuery>) -> Response {
    match off_runtime(move || {
        api.source
            .retry_dead_letters(q.target.as_deref(), q.key.as_deref())
    })
    .await
    {
        Some(Ok(v)) => Json(v).into_response(),
        Some(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        None => internal(),
    }
}

async fn lines(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let n = limit(&api, &q);
    let skip = q.offset.unwrap_or(0);
    match off_runtime(move || api.source.lines(n, skip)).await {
        Some(v) => Json(v).into_response(),
        None => internal(),
    }
}

async fn line(State(api): State<Arc<Api>>, Path(addr): Path<String>) -> Response {
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return error(StatusCode::BAD_REQUEST, "not an IP address");
    };
    match off_runtime(move || api.source.line(ip)).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => error(StatusCode::NOT_FOUND, "no such line"),
        None => internal(),
    }
}

async fn threats(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let n = limit(&api, &q);
    let skip = q.offset.unwrap_or(0);
    match off_runtime(move || api.source.threats(n, skip)).await {
        Some(v) => Json(v).into_response(),
        None => internal(),
    }
}

async fn evidence_list(State(api): State<Arc<Api>>, Query(q): Query<ListQuery>) -> Response {
    let n = limit(&api, &q);
    match off_runtime(move || api.source.evidence_list(n)).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => error(
            StatusCode::NOT_FOUND,
            "evidence is disabled ([evidence] enabled)",
        ),
        None => internal(),
    }
}

async fn evidence_manifest(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    match off_runtime(move || api.source.evidence_manifest(&id)).await {
        Some(Some(v)) => Json(v).into_response(),
        Some(None) => error(StatusCode::NOT_FOUND, "no evidence for this alert"),
        None => internal(),
    }
}

/// A pcap the manifest lists, exactly the bytes the manifest hashed (the file may be growing),
/// streamed in chunks with its length. Only names the manifest lists are opened, inside the
/// alert's own folder.
async fn evidence_file(
    State(api): State<Arc<Api>>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let name = file.clone();
    let Some(found) = off_runtime(move || api.source.evidence_file(&id, &file)).await else {
        return internal();
    };
    let Some((path, bytes)) = found else {
        return error(StatusCode::NOT_FOUND, "no such evidence file");
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return error(StatusCode::NOT_FOUND, "no such evidence file"),
    };
    match file.metadata().await {
        Ok(m) if m.len() >= bytes => {}
        _ => return internal(),
    }
    let body = axum::body::Body::new(FileBody { file, left: bytes });
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.tcpdump.pcap"),
        )],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// Bytes read per chunk of a streamed evidence file.
const FILE_CHUNK: usize = 64 * 1024;

/// The first `left` bytes of a file as a response body of exact length (an evidence pcap can be
/// tens of MiB: it is not read into memory whole).
struct FileBody {
    file: tokio::fs::File,
    left: u64,
}

impl http_body::Body for FileBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        let this = &mut *self;
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.left)
            .unwrap_or(FILE_CHUNK)
            .min(FILE_CHUNK);
        let mut buf = vec![0u8; want];
        let mut rb = tokio::io::ReadBuf::new(&mut buf);
        match std::pin::Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "evidence file shorter than its manifest",
                    ))));
                }
                this.left -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(http_body::Frame::data(buf.into()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let Some(text) = off_runtime(move || api.source.metrics()).await else {
        return internal();
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check_is_exact() {
        let t = TokenCheck::new(Some("0123456789abcdef"));
        assert!(t.accepts("0123456789abcdef"));
        assert!(!t.accepts("0123456789abcdeF"));
        assert!(!t.accepts("0123456789abcdef "));
        assert!(!t.accepts(""));
        let none = TokenCheck::new(None);
        assert!(!none.accepts(""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn short_or_spaced_tokens_are_rejected() {
        let mut c = HttpConfig {
            token: Some("short".into()),
            ..HttpConfig::default()
        };
        assert_eq!(
            c.validate().err().map(|e| e.key),
            Some("token".to_string()),
            "a 5-character token must be rejected"
        );
        c.token = Some("0123456789 abcdef".into());
        assert!(c.validate().is_err());
        c.token = Some("0123456789abcdef".into());
        assert_eq!(c.validate(), Ok(()));
    }
}
