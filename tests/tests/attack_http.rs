//! Red team: `http_fetch` address spellings and list matching, against a real server on
//! 127.0.0.1.

use agent_core::{Tool, ToolContext, ToolError, ToolErrorKind};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::HttpFetch;
use serde_json::json;

async fn fetch(tool: &HttpFetch, url: &str) -> Result<String, ToolError> {
    Tool::call(tool, json!({"url": url}), &ToolContext::detached())
        .await
        .map(|o| o.into_content())
}

/// Held: every spelling that reaches this machine is refused and no connection is made.
#[tokio::test]
async fn attack_loopback_spellings_are_refused() {
    let server = FakeServer::start(|_, _| Reply::raw(200, "text/plain", "SECRET")).await;
    let port = server.addr().port();
    let tool = HttpFetch::new();
    for host in [
        "0",
        "0.0.0.0",
        "127.0.0.1.",
        "127.000.000.001",
        "0177.0.0.1",
        "0x7f000001",
        "017700000001",
        "127.0.1",
        "[::]",
        "[::ffff:0.0.0.0]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::ffff:0:7f00:1]",
        "[::127.0.0.1]",
        "LOCALHOST.",
        "localhost..",
        "lOcAlHoSt",
        "\u{ff11}\u{ff12}\u{ff17}.0.0.1",
        "127\u{3002}0\u{3002}0\u{3002}1",
        "ip6-localhost",
    ] {
        let url = format!("http://{host}:{port}/");
        let result = fetch(&tool, &url).await;
        assert!(
            result.is_err() && !result.as_ref().is_err_and(|e| e.message.contains("SECRET")),
            "{url}: {result:?}"
        );
    }
    // A redirect chain through odd spellings from an allow-listed name.
    let hop = FakeServer::start(move |_, _| {
        Reply::raw(302, "text/plain", "").header("location", &format!("http://0:{port}/"))
    })
    .await;
    let tool = HttpFetch::new().allow_host("localhost");
    let result = fetch(&tool, &format!("http://localhost:{}/", hop.addr().port())).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        server.requests().len(),
        0,
        "a connection reached the server"
    );
}

// BREAKS: the deny-list is compared with the URL's host after IDNA (punycode), but a
// deny-list entry is only lower-cased: a Unicode entry never matches, so `deny_host` of an
// internationalised name denies nothing.
#[tokio::test]
async fn attack_unicode_deny_list_entry_still_denies() {
    let tool = HttpFetch::new().deny_host("bücher.localhost");
    let err = fetch(&tool, "http://bücher.localhost/").await.unwrap_err();
    assert_eq!(err.kind, ToolErrorKind::PermissionDenied, "{err:?}");
    assert!(err.message.contains("deny-list"), "{err:?}");
    let tool = HttpFetch::new().deny_host("BÜCHER.localhost");
    let err = fetch(&tool, "http://xn--bcher-kva.localhost/")
        .await
        .unwrap_err();
    assert!(err.message.contains("deny-list"), "{err:?}");
}
