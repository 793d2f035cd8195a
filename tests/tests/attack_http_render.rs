//! Red team: an HTML rendering bomb for `http_fetch` that the nesting guard does not see.
//! Alone in its file because it measures the process's CPU time.

use std::time::{Duration, Instant};

use agent_core::{Tool, ToolContext};
use agent_tests::fake_server::{FakeServer, Reply};
use agent_tools::HttpFetch;
use serde_json::json;

/// CPU time (user + system) of this process, in clock ticks, from /proc/self/stat.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

// BREAKS: the nesting estimate decrements on every end tag, but the HTML parser ignores an
// end tag with no open element of that name: `<div></x>` repeated nests for real while the
// guard sees depth 1. The call returns at its deadline, but the rendering thread cannot be
// stopped and keeps a core busy long after (minutes for a page under the 2 MiB cap; the
// runtime then also waits for it at shutdown): a few calls pin every core.
#[tokio::test]
async fn attack_fake_end_tags_hide_nesting_and_rendering_outlives_the_call() {
    let body = "<div></x>".repeat(12_000) + "deep text";
    let server = FakeServer::start(move |_, _| Reply::raw(200, "text/html", body.clone())).await;
    let tool = HttpFetch::new()
        .allow_host("127.0.0.1")
        .timeout(Duration::from_secs(2));
    let url = format!("http://127.0.0.1:{}/", server.addr().port());
    let started = Instant::now();
    let out = Tool::call(&tool, json!({"url": url}), &ToolContext::detached())
        .await
        .map(|o| o.into_content())
        .unwrap();
    let took = started.elapsed();
    assert!(out.contains("deep text"), "{out}");
    assert!(took < Duration::from_secs(10), "the call took {took:?}");
    // After the call: is anything still burning CPU on its behalf?
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let burned = cpu_ticks() - before;
    // 2 s of wall time is 200 ticks; an idle process uses next to none.
    assert!(
        burned < 20,
        "{burned} ticks of CPU in the 2 s after the call returned: its rendering still runs"
    );
}
