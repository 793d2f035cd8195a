//! `web_search`: a search engine behind a small trait, with adapters for a SearxNG instance
//! (JSON API, no key; `SEARXNG_URL`) and the Brave Search API (`BRAVE_API_KEY`,
//! `BRAVE_BASE_URL`). Results are title, URL and snippet. Read-only.

use std::sync::Arc;
use std::time::Duration;

use agent_core::secret::ApiKey;
use agent_core::{ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// The page title.
    pub title: String,
    /// Its URL.
    pub url: String,
    /// A short extract, as plain text.
    pub snippet: String,
}

/// A web search engine.
#[async_trait]
pub trait SearchEngine: Send + Sync {
    /// Its name, for messages.
    fn name(&self) -> &str;

    /// Up to `max_results` results for a query.
    async fn search(&self, query: &str, max_results: usize)
    -> Result<Vec<SearchResult>, ToolError>;
}

/// The largest answer read from a search engine.
const MAX_ANSWER_BYTES: usize = 4 << 20;
/// The longest title, URL or snippet passed on, in characters.
const MAX_FIELD_CHARS: usize = 1000;

fn client() -> Result<reqwest::Client, ToolError> {
    crate::tls_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .map_err(|e| ToolError::failed(format!("cannot build the HTTP client: {e}")))
}

async fn get_json(request: reqwest::RequestBuilder, engine: &str) -> Result<Value, ToolError> {
    let response = request
        .send()
        .await
        .map_err(|e| ToolError::failed(format!("{engine} did not answer: {}", e.without_url())))?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(ToolError::failed(format!(
            "{engine} refused the request (HTTP {}): check its key",
            status.as_u16()
        ))
        .with_retryable(false));
    }
    if !status.is_success() {
        return Err(ToolError::failed(format!(
            "{engine} answered HTTP {}",
            status.as_u16()
        )));
    }
    // Read within a cap: a misbehaving engine cannot make the process buffer gigabytes.
    let mut bytes = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
        let chunk = chunk.map_err(|e| {
            ToolError::failed(format!("reading the answer of {engine} failed: {e}"))
        })?;
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ToolError::failed(format!(
                "{engine} sent more than {MAX_ANSWER_BYTES} bytes; the answer was dropped"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ToolError::failed(format!("{engine} sent something that is not JSON: {e}")))
}

/// Strips HTML tags and decodes the common entities (snippets come with `<strong>`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
}

fn field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .map(|text| plain(text).chars().take(MAX_FIELD_CHARS).collect())
        .unwrap_or_default()
}

/// The results in `body` at `pointer` (an array of objects with `title`, `url` and a
/// snippet under `snippet_key`), at most `max`.
fn results_at(body: &Value, pointer: &str, snippet_key: &str, max: usize) -> Vec<SearchResult> {
    body.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(max)
        .map(|r| SearchResult {
            title: field(r, "title"),
            url: field(r, "url"),
            snippet: field(r, snippet_key),
        })
        .collect()
}

/// A SearxNG instance's JSON API (`/search?format=json`; the instance must enable the JSON
/// format).
#[derive(Clone, Debug)]
pub struct SearxNg {
    base_url: String,
    client: reqwest::Client,
}

impl SearxNg {
    /// An instance at this base URL.
    pub fn new(base_url: impl Into<String>) -> Result<Self, ToolError> {
        Ok(SearxNg {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            client: client()?,
        })
    }
}

#[async_trait]
impl SearchEngine for SearxNg {
    fn name(&self) -> &str {
        "SearxNG"
    }

    async fn search(
        &self,
        query: &str,
        max_results: usize,
    ) -> Result<Vec<SearchResult>, ToolError> {
        let request = self
            .client
            .get(format!("{}/search", self.base_url))
            .query(&[("q", query), ("format", "json")]);
        let body = get_json(request, "SearxNG").await?;
        Ok(results_at(&body, "/results", "content", max_results))
    }
}

/// The Brave Search API.
#[derive(Clone, Debug)]
pub struct Brave {
    base_url: String,
    key: ApiKey,
    client: reqwest::Client,
}

impl Brave {
    /// With a key, at the public endpoint or another base URL.
    pub fn new(key: impl Into<String>, base_url: Option<&str>) -> Result<Self, ToolError> {
        Ok(Brave {
            base_url: base_url
                .unwrap_or("https://api.search.brave.com")
                .trim_end_matches('/')
                .to_owned(),
            key: ApiKey::new(key),
            client: client()?,
        })
    }
}

#[async_trait]
impl SearchEngine for Brave {
    fn name(&self) -> &str {
        "Brave Search"
    }

    async fn search(
        &self,
        query: &str,
        max_results: usize,
    ) -> Result<Vec<SearchResult>, ToolError> {
        let token = self
            .key
            .header_value("")
            .map_err(|e| ToolError::failed(e.message))?;
        let count = max_results.clamp(1, 20).to_string();
        let request = self
            .client
            .get(format!("{}/res/v1/web/search", self.base_url))
            .query(&[("q", query), ("count", count.as_str())])
            .header("X-Subscription-Token", token)
            .header(reqwest::header::ACCEPT, "application/json");
        let body = get_json(request, "Brave Search").await?;
        Ok(results_at(
            &body,
            "/web/results",
            "description",
            max_results,
        ))
    }
}

/// Arguments of `web_search`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// What to search for.
    pub query: String,
    /// How many results (1 to 10, default 5).
    #[serde(default)]
    pub max_results: Option<u8>,
}

/// The `web_search` tool over any [`SearchEngine`].
#[derive(Clone)]
pub struct WebSearch {
    engine: Arc<dyn SearchEngine>,
}

impl std::fmt::Debug for WebSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSearch")
            .field("engine", &self.engine.name())
            .finish()
    }
}

impl WebSearch {
    /// Searches with this engine.
    pub fn new(engine: Arc<dyn SearchEngine>) -> Self {
        WebSearch { engine }
    }

    /// SearxNG when `SEARXNG_URL` is set, else Brave when `BRAVE_API_KEY` is set (with
    /// `BRAVE_BASE_URL` if given), else `None`.
    pub fn from_env() -> Option<Result<Self, ToolError>> {
        Self::from_lookup(&|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Option<Result<Self, ToolError>> {
        if let Some(url) = lookup("SEARXNG_URL") {
            return Some(SearxNg::new(url).map(|e| WebSearch::new(Arc::new(e))));
        }
        let key = lookup("BRAVE_API_KEY")?;
        let base = lookup("BRAVE_BASE_URL");
        Some(Brave::new(key, base.as_deref()).map(|e| WebSearch::new(Arc::new(e))))
    }
}

#[async_trait]
impl TypedTool for WebSearch {
    type Args = SearchArgs;

    fn name(&self) -> &str {
        "web_search"
    }

    fn description(&self) -> &str {
        "Searches the web and returns results as title, URL and snippet. Fetch a result's URL \
         with http_fetch to read the page."
    }

    fn meta(&self) -> ToolMeta {
        ToolMeta::read_only()
    }

    async fn call(&self, args: SearchArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let query = args.query.trim();
        if query.is_empty() {
            return Err(ToolError::invalid_arguments("`query` must not be empty"));
        }
        let max = usize::from(args.max_results.unwrap_or(5).clamp(1, 10));
        let results = self.engine.search(query, max).await?;
        if results.is_empty() {
            return Ok(format!("{} found nothing for `{query}`", self.engine.name()).into());
        }
        Ok(serde_json::json!(results).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_lose_their_markup() {
        assert_eq!(
            plain("The <strong>Rust</strong> book &amp; more"),
            "The Rust book & more"
        );
    }

    #[test]
    fn engine_selection_from_the_environment() {
        assert!(WebSearch::from_lookup(&|_| None).is_none());
        let s =
            WebSearch::from_lookup(&|n| (n == "SEARXNG_URL").then(|| "http://127.0.0.1:1".into()))
                .unwrap()
                .unwrap();
        assert_eq!(s.engine.name(), "SearxNG");
        let b = WebSearch::from_lookup(&|n| (n == "BRAVE_API_KEY").then(|| "k".into()))
            .unwrap()
            .unwrap();
        assert_eq!(b.engine.name(), "Brave Search");
        assert!(!format!("{:?}", Brave::new("secret-key", None).unwrap()).contains("secret-key"));
    }
}
