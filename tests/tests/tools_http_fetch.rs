//! http_fetch against a real HTTP server on 127.0.0.1: refused by default, reached only when
//! allow-listed, and every way around the guard (names that resolve to private addresses,
//! IPv6 and IPv4-in-IPv6 forms, odd IPv4 spellings, redirects to forbidden places) refused.

use agent_core::{Tool, ToolContext, ToolError, ToolErrorKind};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::HttpFetch;
use serde_json::json;

async fn fetch(tool: &HttpFetch, url: &str) -> Result<String, ToolError> {
    Tool::call(tool, json!({"url": url}), &ToolContext::detached())
        .await
        .map(|o| o.into_content())
}

fn page() -> Reply {
    Reply::raw(
        200,
        "text/html; charset=utf-8",
        "<html><head><title>T</title></head><body><h1>Hello</h1><p>World &amp; friends</p><script>evil()</script></body></html>",
    )
}

fn assert_refused(result: Result<String, ToolError>) {
    let err = result.expect_err("must be refused");
    assert_eq!(err.kind, ToolErrorKind::PermissionDenied, "{err:?}");
}

#[tokio::test]
async fn a_local_server_is_refused_by_default_and_reached_when_allow_listed() {
    let server = FakeServer::start(|_, _| page()).await;
    let port = server.addr().port();
    let url = format!("http://127.0.0.1:{port}/");
    assert_refused(fetch(&HttpFetch::new(), &url).await);
    assert_eq!(server.requests().len(), 0, "no connection may be made");

    let out = fetch(&HttpFetch::new().allow_host("127.0.0.1"), &url)
        .await
        .unwrap();
    assert!(out.starts_with("status: 200"), "{out}");
    assert!(
        out.contains("Hello") && out.contains("World & friends"),
        "{out}"
    );
    assert!(!out.contains("<h1>"), "HTML must come back as text: {out}");
}

#[tokio::test]
async fn names_and_spellings_that_reach_private_addresses_are_refused() {
    let server = FakeServer::start(|_, _| page()).await;
    let port = server.addr().port();
    let tool = HttpFetch::new();
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::ffff:7f00:1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://0x7f.0.0.1:{port}/"),
        format!("http://127.1:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fd00:ec2::254]/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.0.1/".to_owned(),
        "http://100.64.0.1/".to_owned(),
    ] {
        assert_refused(fetch(&tool, &url).await);
    }
    assert_eq!(server.requests().len(), 0);
}

#[tokio::test]
async fn a_redirect_from_an_allowed_host_to_a_forbidden_address_is_refused() {
    let target = FakeServer::start(|_, _| page()).await;
    let target_port = target.addr().port();
    let redirector = FakeServer::start(move |req, _| {
        let to = match req.path.as_str() {
            "/metadata" => "http://169.254.169.254/latest/meta-data/".to_owned(),
            "/localhost" => format!("http://localhost:{target_port}/"),
            "/mapped" => format!("http://[::ffff:127.0.0.1]:{target_port}/"),
            _ => format!("http://127.0.0.1:{target_port}/"),
        };
        Reply::raw(302, "text/plain", "moved").header("location", &to)
    })
    .await;
    // The redirector is allowed as a host; where it points is checked again.
    let tool = HttpFetch::new()
        .allow_host("127.0.0.1")
        .allow_host("localhost.invalid");
    let base = format!("http://127.0.0.1:{}", redirector.addr().port());
    for path in ["/metadata", "/localhost", "/mapped"] {
        assert_refused(fetch(&tool, &format!("{base}{path}")).await);
    }
    assert_eq!(target.requests().len(), 0);
    // A hop to an allowed host is followed.
    let out = fetch(&tool, &format!("{base}/ok")).await.unwrap();
    assert!(out.contains("Hello"), "{out}");
}

#[tokio::test]
async fn deny_lists_schemes_credentials_size_and_redirect_caps() {
    let server = FakeServer::start(|req, _| match req.path.as_str() {
        "/big" => Reply::raw(200, "text/plain", "x".repeat(10_000)),
        "/json" => Reply::json(200, &json!({"a": 1})),
        "/bin" => Reply::raw(200, "application/octet-stream", vec![0u8, 1, 2, 3]),
        _ => Reply::raw(302, "text/plain", "").header("location", "/loop"),
    })
    .await;
    let base = format!("http://127.0.0.1:{}", server.addr().port());
    let tool = HttpFetch::new()
        .allow_host("127.0.0.1")
        .max_bytes(1000)
        .max_redirects(3);
    let big = fetch(&tool, &format!("{base}/big")).await.unwrap();
    assert!(
        big.ends_with("[content cut at 1000 bytes]"),
        "{}",
        &big[big.len() - 60..]
    );
    assert!(
        fetch(&tool, &format!("{base}/json"))
            .await
            .unwrap()
            .ends_with("{\"a\":1}")
    );
    assert!(
        fetch(&tool, &format!("{base}/bin"))
            .await
            .unwrap()
            .contains("[4 bytes of application/octet-stream content, not shown]")
    );
    let err = fetch(&tool, &format!("{base}/loop")).await.unwrap_err();
    assert!(
        err.message.contains("more than 3 redirects"),
        "{}",
        err.message
    );

    assert_refused(
        fetch(
            &HttpFetch::new().deny_host("example.com"),
            "https://api.example.com/",
        )
        .await,
    );
    assert_refused(
        fetch(
            &HttpFetch::new().allow_host("127.0.0.1"),
            "https://example.org/",
        )
        .await,
    );
    assert_refused(fetch(&tool, "file:///etc/passwd").await);
    assert_refused(
        fetch(
            &tool,
            &format!("http://user:pw@127.0.0.1:{}/json", server.addr().port()),
        )
        .await,
    );
    let err = Tool::call(
        &tool,
        json!({"url": format!("{base}/json"), "method": "POST"}),
        &ToolContext::detached(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, ToolErrorKind::PermissionDenied);
}

#[tokio::test]
async fn a_deny_listed_host_with_a_trailing_dot_is_still_denied() {
    let tool = HttpFetch::new().deny_host("example.com");
    for url in [
        "http://example.com./",
        "http://EXAMPLE.com../x",
        "http://www.example.com./",
    ] {
        assert_refused(fetch(&tool, url).await);
    }
}

#[tokio::test]
async fn a_deeply_nested_page_is_reduced_to_text_within_the_time_limit() {
    // 200,000 nested elements under the 2 MiB download cap: a layout engine needs minutes.
    let mut html = "<div>".repeat(200_000);
    html.push_str("the deep text");
    let server = FakeServer::start(move |_, _| Reply::raw(200, "text/html", html.clone())).await;
    let tool = HttpFetch::new()
        .allow_host("127.0.0.1")
        .timeout(std::time::Duration::from_secs(15));
    let url = format!("http://127.0.0.1:{}/", server.addr().port());
    let started = std::time::Instant::now();
    let out = fetch(&tool, &url).await.unwrap();
    assert!(
        out.contains("the deep text"),
        "{}",
        &out[..out.len().min(500)]
    );
    assert!(
        out.contains("nests more than 200 elements"),
        "{}",
        &out[..out.len().min(500)]
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_text_returned_is_bounded_after_rendering() {
    let body = format!(
        "<html><body>{}</body></html>",
        "<p>word word word</p>".repeat(50_000)
    );
    let server = FakeServer::start(move |_, _| Reply::raw(200, "text/html", body.clone())).await;
    let tool = HttpFetch::new().allow_host("127.0.0.1").max_text(10_000);
    let url = format!("http://127.0.0.1:{}/", server.addr().port());
    let out = fetch(&tool, &url).await.unwrap();
    assert!(out.len() < 10_200, "{} bytes", out.len());
    assert!(
        out.contains("[text cut at 10000 of"),
        "{}",
        &out[out.len() - 200..]
    );
}
