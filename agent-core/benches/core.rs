//! Micro-benchmarks of the loop's own costs (no network): one agent run with the scripted
//! model and two tools, the stream assembler on a long tool-call stream, schema generation
//! for a nested argument type, request serialisation at 10, 100 and 1000 messages, and the
//! spend ledger's reserve and settle.
//!
//! `cargo bench -p agent-core`

// A benchmark, like a test, may stop at the first broken assumption.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use agent_core::backends::openai::{Flavor, assemble_sse_body, request::build_body};
use agent_core::schema::schema_for;
use agent_core::{
    AssistantMessage, ChatModel, ChatRequest, ChatResponse, LlmAgent, Message, ModelError,
    ToolCall, ToolMeta, ToolResult, tool_fn,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Pair {
    a: i64,
    b: i64,
}

/// Answers like the benchmark server: both tool calls first, then the final text.
struct TwoStepModel;

#[agent_core::async_trait]
impl ChatModel for TwoStepModel {
    fn provider(&self) -> &str {
        "bench"
    }
    fn model(&self) -> &str {
        "two-step"
    }
    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        if request.last_tool_results().next().is_some() {
            return Ok(ChatResponse::text("The results are 5 and 20."));
        }
        Ok(ChatResponse::tool_calls(vec![
            ToolCall::new("call_a", "add", &json!({"a": 2, "b": 3})),
            ToolCall::new("call_m", "multiply", &json!({"a": 4, "b": 5})),
        ]))
    }
}

fn loop_turn(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let agent = LlmAgent::builder(Arc::new(TwoStepModel))
        .instructions("Use the tools.")
        .tool(
            tool_fn("add", "Adds.", |p: Pair, _| async move { Ok(p.a + p.b) })
                .with_meta(ToolMeta::read_only()),
        )
        .tool(
            tool_fn("multiply", "Multiplies.", |p: Pair, _| async move {
                Ok(p.a * p.b)
            })
            .with_meta(ToolMeta::read_only()),
        )
        .build()
        .expect("agent");
    c.bench_function(
        "agent run: 2 turns, 2 parallel tool calls (in-process model)",
        |b| {
            b.to_async(&runtime).iter(|| async {
                let result = agent.ask("Compute 2+3 and 4*5").await.expect("run");
                assert_eq!(result.text, "The results are 5 and 20.");
                black_box(result);
            });
        },
    );
}

fn stream_assembler(c: &mut Criterion) {
    // Four tool calls whose arguments arrive two characters at a time: ~2,000 chunks.
    let mut body = String::new();
    for index in 0..4 {
        body.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{index},\"id\":\"call_{index}\",\"type\":\"function\",\"function\":{{\"name\":\"write_file\",\"arguments\":\"\"}}}}]}}}}]}}\n\n"
        ));
        let args = serde_json::to_string(
            &json!({"path": "notes/report.md", "content": "lorem ipsum ".repeat(40)}),
        )
        .expect("json");
        let chars: Vec<char> = args.chars().collect();
        for piece in chars.chunks(2) {
            let piece: String = piece.iter().collect();
            let delta = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}}]});
            body.push_str(&format!("data: {delta}\n\n"));
        }
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
    let chunks = body.matches("data: ").count();
    c.bench_function(
        &format!("stream assembler: {chunks} SSE chunks, 4 tool calls"),
        |b| {
            b.iter(|| {
                let response = assemble_sse_body("openai", "m", black_box(body.as_bytes()))
                    .expect("assembled");
                assert_eq!(response.message.tool_calls.len(), 4);
                black_box(response);
            });
        },
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Trip {
    /// Who travels.
    travellers: Vec<Traveller>,
    legs: Vec<Leg>,
    budget: Option<Money>,
    class: Class,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Traveller {
    name: String,
    age: Option<u8>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Leg {
    from: String,
    to: String,
    date: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
struct Money {
    amount: f64,
    currency: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[allow(dead_code)]
enum Class {
    Economy,
    Business,
}

fn schema(c: &mut Criterion) {
    c.bench_function(
        "schema: generate and normalise a nested argument type",
        |b| {
            b.iter(|| black_box(schema_for::<Trip>()));
        },
    );
}

fn history(n: usize) -> Vec<Message> {
    let mut messages = vec![
        Message::system("You are a careful assistant."),
        Message::user("Start."),
    ];
    let mut i = 0;
    while messages.len() < n {
        let call = ToolCall::new(
            format!("call_{i}"),
            "calculator",
            &json!({"expression": format!("{i} * 17 + 3")}),
        );
        messages.push(Message::Assistant(AssistantMessage::with_tool_calls(
            "Let me compute that.",
            vec![call.clone()],
        )));
        messages.push(Message::Tool(ToolResult::ok(
            &call,
            format!("{}", i * 17 + 3),
        )));
        messages.push(Message::assistant(format!(
            "Step {i} done; the value is {}.",
            i * 17 + 3
        )));
        messages.push(Message::user("Continue with the next step, please."));
        i += 1;
    }
    messages.truncate(n);
    messages
}

fn serialisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("request serialisation (OpenAI body)");
    for n in [10, 100, 1000] {
        let request = ChatRequest {
            messages: history(n).into(),
            ..Default::default()
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &request, |b, request| {
            b.iter(|| {
                black_box(build_body(Flavor::OpenAi, "gpt-4o-mini", request, false).expect("body"))
            });
        });
    }
    group.finish();
}

/// The spend ledger's cost per model call: reserve the worst case against a chain of two
/// budgets (a run's under a shared one), then settle it.
fn ledger(c: &mut Criterion) {
    use agent_core::run::{Budget, BudgetTracker};
    let shared = Arc::new(BudgetTracker::new(Budget {
        max_cost_usd: Some(1e9),
        max_model_requests: Some(u32::MAX),
        ..Default::default()
    }));
    let run = Arc::new(BudgetTracker::child(
        shared,
        Budget {
            max_total_tokens: Some(u64::MAX),
            ..Default::default()
        },
    ));
    let request = ChatRequest {
        messages: history(10).into(),
        max_output_tokens: Some(256),
        ..Default::default()
    };
    let usage = agent_core::Usage {
        input_tokens: 500,
        output_tokens: 100,
        ..Default::default()
    };
    c.bench_function(
        "ledger: reserve and settle, chain of 2 budgets, 10 messages",
        |b| {
            b.iter(|| {
                let held = run.reserve("gpt-4o", black_box(&request)).expect("room");
                held.settle("gpt-4o", &usage).expect("within");
            });
        },
    );
}

criterion_group!(
    benches,
    loop_turn,
    stream_assembler,
    schema,
    serialisation,
    ledger
);
criterion_main!(benches);
