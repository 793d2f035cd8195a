//! A research agent: web search, page fetching (SSRF-guarded) and a calculator.
//!
//! ```text
//! cargo run --example research_agent
//! AGENT_MODEL=openai:gpt-4o-mini SEARXNG_URL=http://127.0.0.1:8888 \
//!     cargo run --example research_agent -- "How tall is the Eiffel Tower in feet?"
//! ```
//!
//! Search uses SearxNG (`SEARXNG_URL`) or Brave (`BRAVE_API_KEY`). Offline (no `AGENT_MODEL`)
//! it runs on the scripted model with a small built-in sample index instead of a search
//! engine, and says so; nothing leaves the machine.

use std::process::ExitCode;
use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, ToolCall};
use agent_examples::{choose_model, exit_code, last_tool_output, print_transcript, task_from_args};
use agent_tools::{Calculator, HttpFetch, SearchEngine, SearchResult, WebSearch};
use serde_json::json;

const QUESTION: &str = "How tall is the Eiffel Tower in feet?";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let question = task_from_args(QUESTION);
    exit_code(run(&question).await)
}

/// A few fixed entries standing in for a search engine when running offline.
struct SampleIndex;

#[async_trait]
impl SearchEngine for SampleIndex {
    fn name(&self) -> &str {
        "the offline sample index"
    }

    async fn search(
        &self,
        query: &str,
        max_results: usize,
    ) -> Result<Vec<SearchResult>, ToolError> {
        let entries = [
            (
                "Eiffel Tower",
                "https://en.wikipedia.org/wiki/Eiffel_Tower",
                "The tower is 330 metres (1,083 ft) tall, about the same height as an 81-storey building.",
            ),
            (
                "Rust (programming language)",
                "https://en.wikipedia.org/wiki/Rust_(programming_language)",
                "Rust is a general-purpose programming language emphasizing performance, type safety and concurrency.",
            ),
        ];
        let words: Vec<String> = query
            .to_lowercase()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(entries
            .iter()
            .filter(|(title, _, snippet)| {
                let text = format!("{title} {snippet}").to_lowercase();
                words
                    .iter()
                    .any(|w| w.len() > 3 && text.contains(w.as_str()))
            })
            .take(max_results)
            .map(|(title, url, snippet)| SearchResult {
                title: (*title).into(),
                url: (*url).into(),
                snippet: (*snippet).into(),
            })
            .collect())
    }
}

async fn run(question: &str) -> Result<(), Box<dyn std::error::Error>> {
    let offline = std::env::var("AGENT_MODEL").map_or(true, |v| v.trim().is_empty());
    let search = match WebSearch::from_env() {
        Some(search) => search?,
        None if offline => WebSearch::new(Arc::new(SampleIndex)),
        None => {
            println!(
                "note: no search engine configured (SEARXNG_URL or BRAVE_API_KEY); using the offline sample index"
            );
            WebSearch::new(Arc::new(SampleIndex))
        }
    };
    let model = choose_model(offline_script)?;
    let agent = LlmAgent::builder(model)
        .instructions(
            "Answer with facts you found: search, fetch pages when snippets are not enough, and \
             use the calculator for conversions. Cite the URL you relied on.",
        )
        .tool(search)
        .tool(HttpFetch::new())
        .tool(Calculator::new())
        .max_turns(8)
        .build()?;
    println!("question: {question}");
    print_transcript(&agent.ask(question).await?);
    Ok(())
}

/// Offline: search for the question, convert the height the first result gives from
/// metres to feet, and answer from those two results.
fn offline_script() -> ScriptedModel {
    ScriptedModel::new()
        .then_reply(|req| {
            let question = req.last_user_text().unwrap_or_default();
            Ok(ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "web_search",
                &json!({"query": question, "max_results": 3}),
            )]))
        })
        .then_reply(|req| {
            let found = last_tool_output(req)
                .map(|(out, _)| out)
                .unwrap_or_default();
            let metres = found
                .split(|c: char| !c.is_ascii_digit())
                .find(|n| n.len() >= 2)
                .unwrap_or("0")
                .to_owned();
            Ok(ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "calculator",
                &json!({"expression": format!("{metres} / 0.3048")}),
            )]))
        })
        .then_reply(|req| {
            let feet = last_tool_output(req)
                .map(|(out, _)| out)
                .unwrap_or_default();
            let source = req
                .messages
                .iter()
                .filter_map(agent_core::Message::as_tool_result)
                .find(|r| r.name == "web_search")
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.content).ok())
                .and_then(|v| v[0]["url"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no source".into());
            Ok(ChatResponse::text(format!(
                "About {feet} feet (source: {source})."
            )))
        })
}
