//! `http_fetch`: GET (and, when enabled, POST) http/https URLs, guarded against SSRF.
//!
//! The tool resolves the host itself and refuses loopback, private, link-local (cloud
//! metadata), CGNAT, multicast, unspecified and reserved addresses, in IPv4 and IPv6 and in
//! every IPv4-in-IPv6 form; it then connects to exactly the address it checked (no DNS
//! rebinding between check and connect), follows redirects itself and checks every hop the
//! same way. Proxies from the environment are ignored (they would hide the destination).
//! A host on the allow-list may be private (that is what allow-listing is for); host names
//! are compared without a trailing dot (`example.com.` is `example.com`). Caps on the
//! download, the redirects, the time, and the text returned. HTML comes back as readable
//! text, rendered on a blocking thread within the fetch's time limit; a page nested deeper
//! than a renderer can handle quickly is reduced to its plain text instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use agent_core::{ToolContext, ToolError, ToolMeta, ToolOutput, TypedTool, async_trait};
use futures::StreamExt;
use reqwest::Url;
use schemars::JsonSchema;
use serde::Deserialize;

/// Arguments of `http_fetch`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct FetchArgs {
    /// The http:// or https:// URL.
    pub url: String,
    /// "GET" (default) or "POST" (only when the tool allows it).
    #[serde(default)]
    pub method: Option<String>,
    /// The request body, for POST.
    #[serde(default)]
    pub body: Option<String>,
}

/// The `http_fetch` tool.
///
/// ```
/// use agent_tools::HttpFetch;
/// let fetch = HttpFetch::new().deny_host("internal.example.com").max_bytes(512 * 1024);
/// ```
#[derive(Clone, Debug)]
pub struct HttpFetch {
    allow_hosts: Vec<String>,
    deny_hosts: Vec<String>,
    max_bytes: usize,
    max_text: usize,
    max_redirects: usize,
    timeout: Duration,
    allow_post: bool,
}

impl Default for HttpFetch {
    fn default() -> Self {
        HttpFetch {
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            max_bytes: 2 << 20,
            max_text: 256 << 10,
            max_redirects: 5,
            timeout: Duration::from_secs(20),
            allow_post: false,
        }
    }
}

impl HttpFetch {
    /// GET only; 2 MiB downloaded, 256 KiB of text returned, 5 redirects, 20 s; every public
    /// host, no private one.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts fetching to these hosts (and lets them be private addresses).
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allow_hosts.push(normal_host(&host.into()));
        self
    }

    /// Refuses this host and its subdomains.
    #[must_use]
    pub fn deny_host(mut self, host: impl Into<String>) -> Self {
        self.deny_hosts.push(normal_host(&host.into()));
        self
    }

    /// Sets the largest body downloaded, in bytes.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets the most text returned to the model, in bytes (after HTML is rendered).
    #[must_use]
    pub fn max_text(mut self, bytes: usize) -> Self {
        self.max_text = bytes;
        self
    }

    /// Sets how many redirects are followed.
    #[must_use]
    pub fn max_redirects(mut self, redirects: usize) -> Self {
        self.max_redirects = redirects;
        self
    }

    /// Sets the time limit for the whole fetch.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Allows POST.
    #[must_use]
    pub fn allow_post(mut self) -> Self {
        self.allow_post = true;
        self
    }

    /// Checks a URL and returns the address to connect to.
    async fn check(&self, url: &Url) -> Result<SocketAddr, ToolError> {
        // In tests under a network guard, nothing but loopback, before any lookup.
        agent_core::backends::guard::check_url(url.as_str()).map_err(|e| denied(e.message))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(denied(format!(
                "`{}` URLs are not allowed; use http or https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(denied("URLs with credentials are not allowed"));
        }
        let Some(host) = url.host_str().map(normal_host) else {
            return Err(ToolError::invalid_arguments("the URL has no host"));
        };
        if self
            .deny_hosts
            .iter()
            .any(|d| host == *d || host.ends_with(&format!(".{d}")))
        {
            return Err(denied(format!("`{host}` is on the deny-list")));
        }
        let allow_listed = self.allow_hosts.contains(&host);
        if !self.allow_hosts.is_empty() && !allow_listed {
            return Err(denied(format!(
                "`{host}` is not on the allow-list ({})",
                self.allow_hosts.join(", ")
            )));
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| ToolError::failed(format!("cannot resolve `{host}`: {e}")))?
                .collect(),
        };
        let Some(first) = addresses.first().copied() else {
            return Err(ToolError::failed(format!("`{host}` has no address")));
        };
        if !allow_listed && let Some(bad) = addresses.iter().find(|a| forbidden(a.ip())) {
            return Err(denied(format!(
                "`{host}` resolves to {}, a private or reserved address; fetching it is not allowed",
                bad.ip()
            )));
        }
        Ok(first)
    }
}

/// A host name as compared with the lists: lower case, without IPv6 brackets and without
/// the trailing dots that make a name fully qualified (`example.com.` is `example.com`).
fn normal_host(host: &str) -> String {
    let host = host.trim_matches(['[', ']']).trim_end_matches('.');
    // The URL parser turns an international name into its ASCII (punycode) form, as it does
    // for the URL being fetched, so `bücher.example` on a list matches `xn--bcher-kva.example`.
    let ascii = Url::parse(&format!("http://{host}/"))
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .filter(|h| !h.starts_with('['));
    ascii
        .as_deref()
        .unwrap_or(host)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn denied(message: impl Into<String>) -> ToolError {
    ToolError::permission_denied(message)
}

/// Whether an address is one a fetch must never reach unless explicitly allowed.
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()                        // 127/8
        || ip.is_private()                  // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()               // 169.254/16, cloud metadata
        || ip.is_multicast()                // 224/4
        || ip.is_broadcast()
        || a == 0                           // 0/8 "this network", unspecified
        || a >= 240                         // 240/4 reserved
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 CGNAT
        || (a == 192 && b == 0 && c == 0)   // 192.0.0/24 IETF
        || (a == 192 && b == 0 && c == 2)   // 192.0.2/24 documentation
        || (a == 198 && b == 51 && c == 100) // 198.51.100/24 documentation
        || (a == 203 && b == 0 && c == 113) // 203.0.113/24 documentation
        || (a == 192 && b == 88 && c == 99) // 192.88.99/24 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let s = ip.segments();
    let first = s[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local (incl. fd00:ec2::254 metadata)
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (first == 0x64 && s[1] == 0xff9b && s[2] == 1) // 64:ff9b:1::/48 local-use NAT64
        || (first == 0x2001 && s[1] == 0) // 2001::/32 Teredo (an IPv4 address inside)
        || (first == 0x2001 && s[1] == 2 && s[2] == 0) // 2001:2::/48 benchmarking
        || (first == 0x2001 && (s[1] & 0xfff0) == 0x10) // 2001:10::/28 ORCHID
        || (first == 0x2001 && (s[1] & 0xfff0) == 0x20) // 2001:20::/28 ORCHIDv2
        || (first == 0x2001 && s[1] == 0xdb8) // 2001:db8::/32 documentation
        || (first & 0xfff0) == 0x3ff0 // 3fff::/20 documentation
        || (first == 0x100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // 100::/64 discard
        || first == 0x5f00 // 5f00::/16 SRv6 segment identifiers
}

/// The IPv4 address inside an IPv4-mapped (::ffff:a.b.c.d), IPv4-translated
/// (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d) or 6to4
/// (2002:aabb:ccdd::) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail); // ::a.b.c.d (not :: or ::1)
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[async_trait]
impl TypedTool for HttpFetch {
    type Args = FetchArgs;

    fn name(&self) -> &str {
        "http_fetch"
    }

    fn description(&self) -> &str {
        "Fetches a public http or https URL and returns its content: web pages as readable \
         text, JSON and text as they are. Private and internal addresses are refused."
    }

    fn meta(&self) -> ToolMeta {
        if self.allow_post {
            ToolMeta::side_effecting().with_timeout(self.timeout + Duration::from_secs(5))
        } else {
            ToolMeta::read_only().with_timeout(self.timeout + Duration::from_secs(5))
        }
    }

    async fn call(&self, args: FetchArgs, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        let post = match args
            .method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("GET") => false,
            Some("POST") if self.allow_post => true,
            Some("POST") => return Err(denied("POST is not enabled for this tool; use GET")),
            Some(other) => {
                return Err(ToolError::invalid_arguments(format!(
                    "method `{other}` is not supported; use GET"
                )));
            }
        };
        let mut url = Url::parse(args.url.trim()).map_err(|e| {
            ToolError::invalid_arguments(format!("`{}` is not a valid URL ({e})", args.url))
        })?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut hops = 0;
        loop {
            let address = self.check(&url).await?;
            let host = url
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']'])
                .to_owned();
            // One client per hop, pinned to the checked address: no second DNS answer.
            crate::tls_provider();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .resolve(&host, address)
                .connect_timeout(Duration::from_secs(10))
                .user_agent("agentic-rs http_fetch")
                .build()
                .map_err(|e| ToolError::failed(format!("cannot build the HTTP client: {e}")))?;
            let request = if post && hops == 0 {
                client
                    .post(url.clone())
                    .body(args.body.clone().unwrap_or_default())
            } else {
                client.get(url.clone())
            };
            let response = tokio::time::timeout_at(deadline, request.send())
                .await
                .map_err(|_| ToolError::failed(format!("`{url}` did not answer in time")))?
                .map_err(|e| {
                    ToolError::failed(format!("fetching `{url}` failed: {}", e.without_url()))
                })?;
            if response.status().is_redirection() {
                let Some(location) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                else {
                    return Err(ToolError::failed(format!(
                        "`{url}` redirected without a location"
                    )));
                };
                hops += 1;
                if hops > self.max_redirects {
                    return Err(ToolError::failed(format!(
                        "more than {} redirects",
                        self.max_redirects
                    )));
                }
                url = url.join(location).map_err(|e| {
                    ToolError::failed(format!("bad redirect location `{location}` ({e})"))
                })?;
                continue;
            }
            let status = response.status();
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            let mut body = Vec::new();
            let mut truncated = false;
            let mut chunks = response.bytes_stream();
            loop {
                let next = tokio::time::timeout_at(deadline, chunks.next())
                    .await
                    .map_err(|_| {
                        ToolError::failed(format!("`{url}` was too slow to send its content"))
                    })?;
                let Some(chunk) = next else { break };
                let chunk =
                    chunk.map_err(|e| ToolError::failed(format!("reading `{url}` failed: {e}")))?;
                let room = self.max_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    truncated = true;
                    break;
                }
            }
            let text = render_within(content_type, body, deadline).await;
            let mut out = format!("status: {}\nurl: {url}\n\n", status.as_u16());
            out.push_str(crate::cut(&text, self.max_text));
            if text.len() > self.max_text {
                out.push_str(&format!(
                    "\n[text cut at {} of {} bytes]",
                    self.max_text,
                    text.len()
                ));
            }
            if truncated {
                out.push_str(&format!("\n[content cut at {} bytes]", self.max_bytes));
            }
            return Ok(ToolOutput::Text(out));
        }
    }
}

/// Element nesting past which HTML is reduced to plain text instead of rendered: the
/// renderer's time grows steeply with depth, and no readable page nests this deep.
const MAX_HTML_DEPTH: usize = 200;

/// Renders a body on a blocking thread, giving up on the layout (not on the text) when the
/// fetch's deadline passes first.
async fn render_within(
    content_type: String,
    body: Vec<u8>,
    deadline: tokio::time::Instant,
) -> String {
    if !content_type.contains("html") {
        return render(&content_type, &body);
    }
    let body = std::sync::Arc::new(body);
    let shared = body.clone();
    let rendering = tokio::task::spawn_blocking(move || render(&content_type, &shared));
    match tokio::time::timeout_at(deadline, rendering).await {
        Ok(Ok(text)) => text,
        _ => format!(
            "[the page took too long to lay out; its text follows]\n{}",
            strip_tags(&body)
        ),
    }
}

fn render(content_type: &str, body: &[u8]) -> String {
    if content_type.contains("html") {
        if html_depth(body, MAX_HTML_DEPTH) > MAX_HTML_DEPTH {
            return format!(
                "[the page nests more than {MAX_HTML_DEPTH} elements deep; its text follows]\n{}",
                strip_tags(body)
            );
        }
        return html2text::from_read(body, 100).unwrap_or_else(|_| strip_tags(body));
    }
    let textual = content_type.is_empty()
        || content_type.starts_with("text/")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.contains("javascript");
    if textual && !body.contains(&0) {
        return String::from_utf8_lossy(body).into_owned();
    }
    format!(
        "[{} bytes of {content_type} content, not shown]",
        body.len()
    )
}

/// The deepest element nesting in an HTML document, estimated in one pass the way a parser
/// nests: an opening tag goes one level down; a closing tag closes the nearest open element
/// of that name (and those inside it), and is ignored when none is open, as a parser ignores
/// it (so `<div></x>` repeated cannot hide its depth). Void and self-closed elements stay
/// level. Stops counting past `limit`, so the work stays linear.
fn html_depth(body: &[u8], limit: usize) -> usize {
    const VOID: &[&[u8]] = &[
        b"area",
        b"base",
        b"br",
        b"col",
        b"embed",
        b"hr",
        b"img",
        b"input",
        b"link",
        b"meta",
        b"source",
        b"track",
        b"wbr",
        b"!doctype",
    ];
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut deepest = 0usize;
    let mut i = 0;
    while let Some(offset) = body[i..].iter().position(|&b| b == b'<') {
        let start = i + offset + 1;
        let end = body[start..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(body.len(), |e| start + e);
        let tag = &body[start..end];
        i = (end + 1).min(body.len());
        let (closing, rest) = match tag.strip_prefix(b"/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let name: Vec<u8> = rest
            .iter()
            .take_while(|b| !b.is_ascii_whitespace() && **b != b'/')
            .map(u8::to_ascii_lowercase)
            .collect();
        if closing {
            if let Some(at) = open.iter().rposition(|n| *n == name) {
                open.truncate(at);
            }
        } else if name.first().is_some_and(u8::is_ascii_alphabetic)
            && !tag.ends_with(b"/")
            && !VOID.contains(&name.as_slice())
        {
            open.push(name);
            deepest = deepest.max(open.len());
            if deepest > limit {
                return deepest;
            }
        }
        if i >= body.len() {
            break;
        }
    }
    deepest
}

/// The text of an HTML document without its tags, scripts and styles, in one linear pass.
fn strip_tags(body: &[u8]) -> String {
    let html = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html.as_ref();
    let mut skipping: Option<&str> = None;
    while let Some(open) = rest.find('<') {
        if skipping.is_none() {
            out.push_str(&rest[..open]);
        }
        let after = &rest[open + 1..];
        let close = after.find('>').map_or(after.len(), |c| c + 1);
        let tag = after[..close.saturating_sub(1).min(after.len())].to_ascii_lowercase();
        match skipping {
            Some(name) if tag.starts_with('/') && tag[1..].starts_with(name) => skipping = None,
            None if tag.starts_with("script") => skipping = Some("script"),
            None if tag.starts_with("style") => skipping = Some("style"),
            None => out.push(' '),
            _ => {}
        }
        rest = &after[close.min(after.len())..];
    }
    if skipping.is_none() {
        out.push_str(rest);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth_is_measured_in_one_pass() {
        let depth = |html: &[u8]| html_depth(html, 10_000);
        assert_eq!(
            depth(b"<html><body><p>a<br>b<img src=x/></p></body></html>"),
            3
        );
        assert_eq!(depth(&b"<div>".repeat(5000)), 5000);
        assert_eq!(depth(b"<!doctype html><p>x</p>"), 1);
        assert_eq!(depth(b"a < b and c<"), 0);
        // An end tag with no open element of its name closes nothing.
        assert_eq!(depth(&b"<div></x>".repeat(300)), 300);
        // One that closes an outer element closes what is inside it too.
        assert_eq!(depth(b"<div><span><b>x</div><p>y</p>"), 3);
        // Counting stops past the limit.
        assert_eq!(html_depth(&b"<div>".repeat(5000), 200), 201);
    }

    #[test]
    fn stripped_text_keeps_words_and_drops_scripts() {
        let text =
            strip_tags(b"<p>Hello <b>big</b></p><script>evil()</script><style>p{}</style>world");
        assert_eq!(text, "Hello big world");
    }

    #[test]
    fn hosts_are_compared_without_trailing_dots_or_case() {
        assert_eq!(normal_host("Example.COM."), "example.com");
        assert_eq!(normal_host("[::1]"), "::1");
    }

    #[test]
    fn private_and_reserved_addresses_are_forbidden_in_every_form() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.88.99.1",
            "64:ff9b:1::a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:a9fe:a9fe",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
        ] {
            assert!(forbidden(ip.parse().unwrap()), "{ip} must be forbidden");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "2002:0808:0808::",
            "2001:4860:4860::8888",
        ] {
            assert!(!forbidden(ip.parse().unwrap()), "{ip} must be allowed");
        }
    }
}
