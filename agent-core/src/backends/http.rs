//! The one HTTP layer every backend shares: a reqwest client with rustls, timeouts, and
//! retries in exactly one place.
//!
//! Connection failures and 408/409/429/500/502/503/504/529 are retried with exponential
//! backoff and full jitter, honouring `retry-after-ms` / `retry-after` (seconds or an HTTP
//! date) up to a cap; 400/401/403/404/422 never are. A stream is only retried before its
//! headers arrive, so content is never replayed. API keys live in [`ApiKey`], which never
//! prints, and go out in headers marked sensitive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::{ModelError, ModelErrorKind};
pub use crate::secret::ApiKey;

tokio::task_local! {
    /// Told of every `retry-after` a rate-limited attempt asked for, before this layer
    /// retries it itself; set by a [`SharedLimit`](crate::resilience::SharedLimit) around
    /// the call so every request behind the limit waits too.
    pub(crate) static RETRY_AFTER_SEEN: std::sync::Arc<dyn Fn(Duration) + Send + Sync>;
}

/// How failed requests are retried.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 3).
    pub max_retries: u32,
    /// The backoff before the first retry, doubled each time (default 500 ms).
    pub initial_backoff: Duration,
    /// The most one backoff may be (default 8 s).
    pub max_backoff: Duration,
    /// The longest `retry-after` honoured; a provider asking for more is not retried, and
    /// its error carries the requested wait (default 60 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..Default::default()
        }
    }

    /// The wait before retry number `attempt + 1` after `error`, or `None` when it should
    /// not be retried. `jitter` is in `[0, 1)`; the backoff is `jitter × min(max, initial ×
    /// 2^attempt)` (full jitter), unless the provider said how long to wait.
    pub fn delay(&self, error: &ModelError, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt >= self.max_retries || !error.is_retryable() {
            return None;
        }
        if let Some(wait) = error.retry_after {
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(20)));
        Some(exp.min(self.max_backoff).mul_f64(jitter.clamp(0.0, 1.0)))
    }
}

/// Timeouts and retries of the HTTP layer.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpConfig {
    /// Establishing a connection (default 10 s).
    pub connect_timeout: Duration,
    /// A whole non-streaming request, or a stream's wait for its headers (default 300 s).
    pub request_timeout: Duration,
    /// The longest a stream may go without an event. Comments and keep-alive lines do not
    /// count as events (default 120 s).
    pub stream_idle_timeout: Duration,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Which HTTP versions to speak (default [`HttpVersion::Negotiate`]).
    pub version: HttpVersion,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            stream_idle_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            version: HttpVersion::Negotiate,
        }
    }
}

/// Which HTTP versions a client speaks.
///
/// Over HTTP/2 one connection carries every concurrent request to a host, so thousands of
/// agents need one socket instead of one each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpVersion {
    /// HTTP/2 where the server offers it during the TLS handshake (ALPN, as every hosted
    /// provider does), HTTP/1.1 otherwise and on plain `http://`.
    #[default]
    Negotiate,
    /// HTTP/1.1 only, for proxies and gateways whose HTTP/2 is broken.
    Http1Only,
    /// HTTP/2 without asking, also on plain `http://` ("h2c with prior knowledge"): for a
    /// local gateway or inference server that speaks HTTP/2 in clear text.
    Http2PriorKnowledge,
}

/// Where a request goes and who it is for (for error messages).
#[derive(Clone, Debug)]
pub struct Target {
    /// The full URL.
    pub url: String,
    /// Headers, the key among them (marked sensitive).
    pub headers: HeaderMap,
    /// The provider, for errors.
    pub provider: String,
    /// The model, for errors.
    pub model: String,
    /// A provider's own reading of its error bodies, applied after the generic one (Gemini
    /// says "bad key" with a 400, and "wait" in the body rather than a header).
    pub refine_error: Option<fn(&mut ModelError, &[u8])>,
}

impl Target {
    fn error(&self, kind: ModelErrorKind, message: impl Into<String>) -> ModelError {
        ModelError::new(kind, message).with_provider(self.provider.clone(), self.model.clone())
    }
}

/// The shared client. Cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    config: HttpConfig,
    /// The URLs this client has posted to, parsed once (a model posts to one or two), so a
    /// request does not parse its URL again.
    urls: std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::Url)>>>,
}

impl HttpClient {
    /// A client with these timeouts and retries.
    ///
    /// Clients with the same connection settings (connect timeout and HTTP version) share
    /// one connection pool in the process: a thousand agents built one by one reuse the same
    /// connections (and, over HTTP/2, the same socket), and building a model costs no TLS
    /// set-up after the first.
    pub fn new(config: HttpConfig) -> Result<Self, ModelError> {
        type Pools = Vec<((Duration, HttpVersion), reqwest::Client)>;
        static POOLS: std::sync::Mutex<Pools> = std::sync::Mutex::new(Vec::new());
        let key = (config.connect_timeout, config.version);
        // A poisoned lock only means another thread panicked while building; the list is
        // still whole (a push is the only write).
        let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, client)) = pools.iter().find(|(k, _)| *k == key) {
            return Ok(HttpClient {
                client: client.clone(),
                config,
                urls: Default::default(),
            });
        }
        let client = build_client(&config)?;
        pools.push((key, client.clone()));
        Ok(HttpClient {
            client,
            config,
            urls: Default::default(),
        })
    }

    /// A request to `url`, its URL parsed once per client. A URL that does not parse goes
    /// to reqwest as it is, which reports it when the request is sent.
    fn post(&self, url: &str) -> reqwest::RequestBuilder {
        const KEPT: usize = 8;
        // A poisoned lock only means a panic elsewhere; the cache is still whole.
        let mut urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, parsed)) = urls.iter().find(|(raw, _)| raw == url) {
            return self.client.post(parsed.clone());
        }
        match reqwest::Url::parse(url) {
            Ok(parsed) => {
                if urls.len() < KEPT {
                    urls.push((url.to_owned(), parsed.clone()));
                }
                self.client.post(parsed)
            }
            Err(_) => self.client.post(url),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// POSTs a JSON body and returns the whole response body of a 2xx answer, retrying as the
    /// policy says. Reading the body is part of each attempt, so a connection that drops
    /// mid-body is retried too.
    pub async fn post_json(&self, target: &Target, body: Bytes) -> Result<Bytes, ModelError> {
        self.with_retries(target, |attempt| {
            let body = body.clone();
            // One deadline for the whole attempt, headers and body.
            let attempt = async move {
                let response = self.send_once(target, body, attempt).await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| transport_error(target, &e))
            };
            async move {
                tokio::time::timeout(self.config.request_timeout, attempt)
                    .await
                    .map_err(|_| self.timeout_error(target))?
            }
        })
        .await
    }

    /// POSTs a JSON body and returns the 2xx response as soon as its headers arrive, for the
    /// caller to stream. Retries only happen before that point.
    pub async fn post_stream(
        &self,
        target: &Target,
        body: Bytes,
    ) -> Result<reqwest::Response, ModelError> {
        self.with_retries(target, |attempt| {
            let body = body.clone();
            async move {
                tokio::time::timeout(
                    self.config.request_timeout,
                    self.send_once(target, body, attempt),
                )
                .await
                .map_err(|_| self.timeout_error(target))?
            }
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, target: &Target, mut once: F) -> Result<T, ModelError>
    where
        F: FnMut(u32) -> Fut,
        Fut: std::future::Future<Output = Result<T, ModelError>>,
    {
        let mut attempt = 0;
        loop {
            match once(attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let Some(wait) = self.config.retry.delay(&error, attempt, jitter()) else {
                        return Err(error);
                    };
                    if error.kind == ModelErrorKind::RateLimited
                        && let Some(asked) = error.retry_after
                    {
                        // A shared limit around this call holds its other requests too.
                        let _ = RETRY_AFTER_SEEN.try_with(|seen| seen(asked));
                    }
                    tracing::warn!(
                        gen_ai.provider.name = %target.provider,
                        gen_ai.request.model = %target.model,
                        error.type = %crate::telemetry::spans::model_error_type(&error),
                        http.response.status_code = error.status,
                        retry.attempt = attempt + 1,
                        retry.wait_ms = wait.as_millis() as u64,
                        "model request failed, retrying: {error}"
                    );
                    crate::telemetry::spans::note_retry(attempt + 1);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// One attempt, up to the response's headers (and the whole body of an error); the
    /// caller bounds it in time.
    async fn send_once(
        &self,
        target: &Target,
        body: Bytes,
        attempt: u32,
    ) -> Result<reqwest::Response, ModelError> {
        super::guard::check_url(&target.url)
            .map_err(|e| e.with_provider(target.provider.clone(), target.model.clone()))?;
        let mut request = self
            .post(&target.url)
            .headers(target.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if attempt > 0 {
            request = request.header(
                HeaderName::from_static("x-retry-count"),
                HeaderValue::from(attempt),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error(target, &e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Err(error_from_response(target, status, &headers, &body))
    }

    fn timeout_error(&self, target: &Target) -> ModelError {
        target.error(
            ModelErrorKind::Timeout,
            format!(
                "no answer from {} within {}s",
                redact_url(&target.url),
                self.config.request_timeout.as_secs()
            ),
        )
    }
}

/// A reqwest client with our TLS provider, timeouts, HTTP versions and redirect rules.
fn build_client(config: &HttpConfig) -> Result<reqwest::Client, ModelError> {
    // reqwest 0.13 takes the process-wide rustls provider; ring is ours. A provider
    // already installed (by us or by the application) stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if let Err(refused) = super::guard::check_url(attempt.url().as_str()) {
                attempt.error(refused.message)
            } else {
                attempt.follow()
            }
        }));
    builder = match config.version {
        HttpVersion::Negotiate => builder,
        HttpVersion::Http1Only => builder.http1_only(),
        HttpVersion::Http2PriorKnowledge => builder.http2_prior_knowledge(),
    };
    builder.build().map_err(|e| {
        ModelError::new(
            ModelErrorKind::Configuration,
            format!("cannot build the HTTP client: {}", error_chain(&e)),
        )
    })
}

/// A transport failure (connect, reset, TLS) as a retryable error naming the host.
fn transport_error(target: &Target, error: &reqwest::Error) -> ModelError {
    let kind = if error.is_timeout() {
        ModelErrorKind::Timeout
    } else {
        ModelErrorKind::Connection
    };
    target.error(
        kind,
        format!("{}: {}", redact_url(&target.url), error_chain(error)),
    )
}

/// The messages of an error and its sources, joined, without the URL reqwest adds.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p: &String| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// A configuration variable through a lookup: trimmed, and `None` when unset or empty.
pub(crate) fn env_var(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A base URL without its trailing `/`, or a configuration error naming it (redacted).
pub(crate) fn check_base_url<'a>(
    base: &'a str,
    provider: &str,
    model: &str,
) -> Result<&'a str, ModelError> {
    let base = base.trim_end_matches('/');
    if reqwest::Url::parse(base).is_err() {
        return Err(ModelError::new(
            ModelErrorKind::Configuration,
            format!("`{}` is not a valid base URL", redact_url(base)),
        )
        .with_provider(provider, model));
    }
    Ok(base)
}

/// A URL without user info or query string (either could hold a credential).
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "<invalid url>".into();
    };
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    parsed.set_query(None);
    parsed.to_string()
}

/// Builds the error for a non-2xx answer: the kind from the status (and the provider's error
/// code), the provider's code and message from the body, the wait from the headers.
pub fn error_from_response(
    target: &Target,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
) -> ModelError {
    let parsed = ErrorBody::parse(body);
    let mut kind = kind_for_status(status, &parsed);
    if headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        && kind.is_retryable()
    {
        kind = ModelErrorKind::Other;
    }
    let message = parsed.message.clone().unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() || text.starts_with('<') {
            // Edge proxies answer with HTML pages; their markup helps nobody.
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no details")
                .to_owned()
        } else {
            text.chars().take(500).collect()
        }
    });
    let mut error = target
        .error(kind, scrub_secrets(&target.headers, message))
        .with_status(status);
    error.code = parsed.code.or(parsed.kind);
    error.retry_after = retry_after(headers);
    if let Some(refine) = target.refine_error {
        refine(&mut error, body);
    }
    error
}

/// Removes any credential sent in a sensitive header from a text the server wrote back (a
/// provider that echoes the key in its error message must not put it in our error).
fn scrub_secrets(headers: &HeaderMap, text: String) -> String {
    let mut text = text;
    for value in headers.values().filter(|v| v.is_sensitive()) {
        let Ok(value) = value.to_str() else { continue };
        let secret = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        if secret.len() >= 4 && text.contains(secret) {
            text = text.replace(secret, "<redacted>");
        }
    }
    text
}

/// The interesting parts of a provider's error body, whichever shape it has:
/// `{"error":{"message","type","code"}}` (OpenAI, DeepSeek, vLLM new), `{"object":"error",
/// "message","type","code"}` (Mistral, vLLM old), `{"error":"text"}` (Ollama), `{"message"}`,
/// `{"detail": "..." | [..]}` (validation errors).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ErrorBody {
    /// The message.
    pub message: Option<String>,
    /// The error type (`invalid_request_error`, `rate_limit_error`, ...).
    pub kind: Option<String>,
    /// The error code (`context_length_exceeded`, `insufficient_quota`, `3280`, ...).
    pub code: Option<String>,
}

impl ErrorBody {
    /// Parses a body leniently; anything unreadable gives an empty result.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return ErrorBody::default();
        };
        Self::from_value(&value)
    }

    /// Reads the parts from a parsed body (also used for errors inside a stream).
    pub fn from_value(value: &Value) -> Self {
        let inner = match value.get("error") {
            Some(Value::String(message)) => {
                return ErrorBody {
                    message: Some(message.clone()),
                    ..Default::default()
                };
            }
            Some(obj @ Value::Object(_)) => obj,
            _ => value,
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let mut message = text(inner.get("message"));
        if let Some(detail) = inner
            .get("detail")
            .or_else(|| inner.get("message").filter(|m| m.is_object()))
        {
            message = Some(match detail {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        // OpenRouter wraps the upstream error as a JSON string in metadata.raw.
        if let Some(raw) = inner.pointer("/metadata/raw").and_then(Value::as_str) {
            let upstream = message.take().unwrap_or_default();
            message = Some(format!(
                "{upstream}: {}",
                raw.chars().take(500).collect::<String>()
            ));
        }
        ErrorBody {
            message,
            kind: text(inner.get("type")),
            code: text(inner.get("code")),
        }
    }

    fn mentions(&self, needle: &str) -> bool {
        [&self.code, &self.kind, &self.message].iter().any(|f| {
            f.as_deref()
                .is_some_and(|s| s.to_ascii_lowercase().contains(needle))
        })
    }
}

/// The kind of failure a status (and the body's code) means.
pub fn kind_for_status(status: u16, body: &ErrorBody) -> ModelErrorKind {
    if body.mentions("context_length")
        || body.mentions("exceed_context")
        || body.mentions("maximum context length")
        || body.mentions("context size")
    {
        return ModelErrorKind::ContextLengthExceeded;
    }
    match status {
        401 => ModelErrorKind::Authentication,
        402 => ModelErrorKind::QuotaExceeded,
        403 => ModelErrorKind::PermissionDenied,
        404 => ModelErrorKind::NotFound,
        408 => ModelErrorKind::Timeout,
        429 if body.mentions("insufficient_quota") => ModelErrorKind::QuotaExceeded,
        429 => ModelErrorKind::RateLimited,
        409 | 500 | 502 | 504 => ModelErrorKind::Server,
        503 | 529 => ModelErrorKind::Overloaded,
        500..=599 => ModelErrorKind::Server,
        _ => ModelErrorKind::BadRequest,
    }
}

/// Classifies an error that came without a status from the words in its type and code.
pub(crate) fn kind_from_words(body: &ErrorBody) -> ModelErrorKind {
    let words = format!(
        "{} {}",
        body.kind.as_deref().unwrap_or(""),
        body.code.as_deref().unwrap_or("")
    )
    .to_ascii_lowercase();
    if words.contains("rate") {
        ModelErrorKind::RateLimited
    } else if words.contains("overload") || words.contains("capacity") {
        ModelErrorKind::Overloaded
    } else if words.contains("context") {
        ModelErrorKind::ContextLengthExceeded
    } else {
        ModelErrorKind::Server
    }
}

/// The wait a response asks for: `retry-after-ms`, else `retry-after` as seconds or as an
/// HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// A number in `[0, 1)` for backoff jitter; not for anything that needs real randomness.
fn jitter() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = STATE
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(seed);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            url: "http://127.0.0.1:1/v1/chat/completions".into(),
            headers: HeaderMap::new(),
            provider: "openai".into(),
            model: "m".into(),
            refine_error: None,
        }
    }

    fn err(status: u16, body: &str) -> ModelError {
        error_from_response(&target(), status, &HeaderMap::new(), body.as_bytes())
    }

    #[test]
    fn statuses_are_classified() {
        let cases = [
            (400, ModelErrorKind::BadRequest, false),
            (401, ModelErrorKind::Authentication, false),
            (402, ModelErrorKind::QuotaExceeded, false),
            (403, ModelErrorKind::PermissionDenied, false),
            (404, ModelErrorKind::NotFound, false),
            (408, ModelErrorKind::Timeout, true),
            (409, ModelErrorKind::Server, true),
            (413, ModelErrorKind::BadRequest, false),
            (422, ModelErrorKind::BadRequest, false),
            (429, ModelErrorKind::RateLimited, true),
            (500, ModelErrorKind::Server, true),
            (502, ModelErrorKind::Server, true),
            (503, ModelErrorKind::Overloaded, true),
            (504, ModelErrorKind::Server, true),
            (529, ModelErrorKind::Overloaded, true),
        ];
        for (status, kind, retry) in cases {
            let e = err(status, "");
            assert_eq!((e.kind, e.is_retryable()), (kind, retry), "HTTP {status}");
            assert_eq!(e.status, Some(status));
        }
    }

    #[test]
    fn every_error_body_shape_gives_its_message_and_code() {
        let e = err(
            400,
            r#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert_eq!(e.kind, ModelErrorKind::ContextLengthExceeded);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.message, "too long");

        let e = err(
            400,
            r#"{"object":"error","message":"Tool call id was call_1 but must be a-z, A-Z, 0-9, with a length of 9.","type":"invalid_function_call","param":null,"code":"3280"}"#,
        );
        assert_eq!(e.code.as_deref(), Some("3280"));
        assert!(e.message.starts_with("Tool call id was"));

        let e = err(
            404,
            r#"{"error":"model \"llama9:70b\" not found, try pulling it first"}"#,
        );
        assert_eq!(e.kind, ModelErrorKind::NotFound);
        assert!(e.message.contains("try pulling it first"));

        let e = err(
            422,
            r#"{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","store"]}]},"type":"invalid_request_message","code":null}"#,
        );
        assert!(e.message.contains("extra_forbidden"), "{}", e.message);

        let e = err(
            429,
            r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        );
        assert_eq!(e.kind, ModelErrorKind::QuotaExceeded);
        assert!(!e.is_retryable());

        let e = err(
            400,
            r#"{"error":{"code":400,"message":"request (13392 tokens) exceeds the available context size (8192 tokens)","type":"exceed_context_size_error"}}"#,
        );
        assert_eq!(e.kind, ModelErrorKind::ContextLengthExceeded);
        assert_eq!(e.code.as_deref(), Some("400"));

        let e = err(502, "<html><body>Bad gateway</body></html>");
        assert_eq!(e.message, "Bad Gateway");

        let e = err(401, r#"{"detail":"Unauthorized"}"#);
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ModelErrorKind::Authentication, "Unauthorized")
        );
    }

    #[test]
    fn retry_after_headers_are_read_in_every_form() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        let mut h = HeaderMap::new();
        let later = SystemTime::now() + Duration::from_secs(30);
        h.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let wait = retry_after(&h).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_is_exponential_with_full_jitter_and_capped() {
        let p = RetryPolicy::default();
        let e = ModelError::new(ModelErrorKind::Server, "");
        assert_eq!(p.delay(&e, 0, 0.999_999).unwrap().as_millis(), 499);
        assert_eq!(p.delay(&e, 2, 0.5), Some(Duration::from_secs(1)));
        assert_eq!(p.delay(&e, 2, 0.0), Some(Duration::ZERO));
        let big = RetryPolicy {
            max_retries: 50,
            ..Default::default()
        };
        assert_eq!(big.delay(&e, 40, 0.5), Some(Duration::from_secs(4)));
        assert_eq!(p.delay(&e, 3, 0.5), None, "out of retries");
        let auth = ModelError::new(ModelErrorKind::Authentication, "");
        assert_eq!(p.delay(&auth, 0, 0.5), None);
        let told = e.clone().with_retry_after(Duration::from_secs(7));
        assert_eq!(p.delay(&told, 0, 0.5), Some(Duration::from_secs(7)));
        let too_long = e.with_retry_after(Duration::from_secs(600));
        assert_eq!(p.delay(&too_long, 0, 0.5), None);
    }

    #[test]
    fn x_should_retry_false_stops_retries() {
        let mut h = HeaderMap::new();
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        let e = error_from_response(&target(), 503, &h, b"");
        assert!(!e.is_retryable());
    }

    #[test]
    fn a_key_echoed_in_an_error_body_is_scrubbed() {
        let mut t = target();
        t.headers.insert(
            reqwest::header::AUTHORIZATION,
            ApiKey::new("sk-echo-me-123")
                .header_value("Bearer ")
                .unwrap(),
        );
        let e = error_from_response(
            &t,
            401,
            &HeaderMap::new(),
            br#"{"error":{"message":"Incorrect API key provided: sk-echo-me-123","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(e.message, "Incorrect API key provided: <redacted>");
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn keys_never_print_and_urls_lose_credentials() {
        let key = ApiKey::new("sk-secret-123");
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        assert!(key.header_value("Bearer ").unwrap().is_sensitive());
        assert_eq!(
            redact_url("https://user:pw@example.com/v1?key=sk-secret"),
            "https://example.com/v1"
        );
    }
}
