//! Agents as tools, completed: typed input; the nested run's usage summed exactly into the
//! parent's and kept per sub-agent; nested events in the outer stream, tagged and in order;
//! an inner approval pause surfacing as the outer run's pause and resuming as one.

// Test helpers outside #[test] fns unwrap and panic: a failure is the test's verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use agent_core::prelude::*;
use agent_core::run::{AgentUsage, Prices, RunEvent};
use agent_core::testing::ScriptedModel;
use agent_core::{AgentTool, Approval, ChatResponse, StopReason, ToolCall, Usage};
use agent_tests::with_usage;
use futures::StreamExt;
use serde_json::json;

fn call(id: &str, name: &str, args: serde_json::Value) -> ChatResponse {
    ChatResponse::tool_calls(vec![ToolCall::new(id, name, &args)])
}

/// triage → researcher → fetcher, each with usage of its own.
fn three_levels() -> LlmAgent {
    let fetcher = LlmAgent::builder(Arc::new(
        ScriptedModel::named("gpt-4o-mini").then_response(with_usage(
            ChatResponse::text("page text"),
            7,
            3,
        )),
    ))
    .name("fetcher")
    .description("Fetches pages.")
    .build()
    .unwrap();
    let researcher = LlmAgent::builder(Arc::new(
        ScriptedModel::named("gpt-4o")
            .then_response(with_usage(
                call("f1", "fetcher", json!({"input": "get it"})),
                100,
                10,
            ))
            .then_response(with_usage(ChatResponse::text("found it"), 200, 20)),
    ))
    .name("researcher")
    .description("Researches.")
    .tool(AgentTool::new(Arc::new(fetcher)).unwrap())
    .build()
    .unwrap();
    LlmAgent::builder(Arc::new(
        ScriptedModel::named("gpt-4o")
            .then_response(with_usage(
                call("r1", "researcher", json!({"input": "look"})),
                1000,
                50,
            ))
            .then_response(with_usage(ChatResponse::text("answer"), 2000, 60)),
    ))
    .name("triage")
    .tool(AgentTool::new(Arc::new(researcher)).unwrap())
    .build()
    .unwrap()
}

#[tokio::test]
async fn parent_usage_is_exactly_its_own_plus_every_nested_runs_and_each_is_kept() {
    let result = three_levels().ask("go").await.unwrap();
    assert_eq!(result.text, "answer");
    let own: Usage = result.turn_usage.iter().copied().sum();
    assert_eq!((own.input_tokens, own.output_tokens), (3000, 110));
    let researcher = &result.sub_agents[0];
    assert_eq!(researcher.agent, "researcher");
    assert_eq!(researcher.turn_usage.len(), 2);
    assert_eq!(researcher.turn_models, vec!["gpt-4o", "gpt-4o"]);
    let fetcher = &researcher.sub_agents[0];
    assert_eq!(fetcher.agent, "fetcher");
    assert_eq!(fetcher.own_usage().input_tokens, 7);
    assert_eq!(result.usage, own + researcher.usage());
    assert_eq!(
        (result.usage.input_tokens, result.usage.output_tokens),
        (3000 + 300 + 7, 110 + 30 + 3)
    );
    let tree: AgentUsage = result.usage_tree("triage");
    assert_eq!(tree.usage(), result.usage);
    assert_eq!(tree.calls(), 5);
    // Priced: every model here has a list price.
    let prices = Prices::default();
    let cost = tree.cost_usd(&prices).unwrap();
    let expected = (3000.0 * 2.5 + 110.0 * 10.0 + 300.0 * 2.5 + 30.0 * 10.0) / 1e6
        + (7.0 * 0.15 + 3.0 * 0.60) / 1e6;
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    let printed = tree.render(&prices);
    assert!(printed.starts_with("triage: 5 calls"), "{printed}");
    assert!(printed.contains("\n  researcher: 3 calls"), "{printed}");
    assert!(printed.contains("\n    fetcher: 1 call,"), "{printed}");
}

#[tokio::test]
async fn nested_events_arrive_tagged_with_agent_and_depth_in_order_inside_the_call() {
    let agent = three_levels();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = agent.run_stream("go", &ctx).collect().await;
    let mut lines = Vec::new();
    for event in &events {
        let line = match event {
            RunEvent::ToolCallStarted { name, .. } => format!("start {name}"),
            RunEvent::ToolCallFinished { name, .. } => format!("end {name}"),
            RunEvent::SubAgent {
                agent,
                depth,
                event,
            } => match &**event {
                RunEvent::TurnStarted { turn } => format!("{agent}@{depth} turn {turn}"),
                RunEvent::ToolCallStarted { name, .. } => {
                    format!("{agent}@{depth} start {name}")
                }
                RunEvent::ToolCallFinished { name, .. } => {
                    format!("{agent}@{depth} end {name}")
                }
                RunEvent::TextDelta(text) => format!("{agent}@{depth} text {text}"),
                _ => continue,
            },
            _ => continue,
        };
        lines.push(line);
    }
    assert_eq!(
        lines,
        vec![
            "start researcher",
            "researcher@1 turn 1",
            "researcher@1 start fetcher",
            "fetcher@2 turn 1",
            "fetcher@2 text page text",
            "researcher@1 end fetcher",
            "researcher@1 turn 2",
            "researcher@1 text found it",
            "end researcher",
        ]
    );
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Delete {
    path: String,
}

/// An outer agent whose sub-agent wants to delete a file, which needs approval.
fn with_guarded_sub_agent(deleted: Arc<Mutex<Vec<String>>>, inner: ScriptedModel) -> LlmAgent {
    let janitor = LlmAgent::builder(Arc::new(inner))
        .name("janitor")
        .description("Cleans up.")
        .tool(tool_fn("delete", "Deletes a file.", move |d: Delete, _| {
            let deleted = deleted.clone();
            async move {
                deleted.lock().unwrap().push(d.path.clone());
                Ok(format!("deleted {}", d.path))
            }
        }))
        .approval_policy(|name, _| name == "delete")
        .build()
        .unwrap();
    LlmAgent::builder(Arc::new(
        ScriptedModel::new()
            .then_response(call("o1", "janitor", json!({"input": "clean /tmp/x"})))
            .then_reply(|request| {
                Ok(ChatResponse::text(format!(
                    "janitor said: {}",
                    request.messages.last().unwrap().text()
                )))
            }),
    ))
    .name("boss")
    .tool(AgentTool::new(Arc::new(janitor)).unwrap())
    .build()
    .unwrap()
}

fn janitor_model() -> ScriptedModel {
    ScriptedModel::new()
        .then_response(call("d1", "delete", json!({"path": "/tmp/x"})))
        .then_reply(|request| {
            Ok(ChatResponse::text(format!(
                "tool said: {}",
                request.messages.last().unwrap().text()
            )))
        })
}

/// Runs until the nested pause, checks it, and resumes the state after a trip through
/// JSON (as another process would) with `decision`.
async fn pause_and_resume(decision: Approval) -> (RunResult, Vec<String>) {
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let boss = with_guarded_sub_agent(deleted.clone(), janitor_model());
    let paused = boss.ask("tidy up").await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::AwaitingApproval);
    let interruption = paused.interruption.unwrap();
    assert_eq!(interruption.pending.len(), 1);
    let pending = &interruption.pending[0];
    assert_eq!(
        (pending.call_id.as_str(), pending.name.as_str()),
        ("o1/d1", "delete")
    );
    assert!(
        deleted.lock().unwrap().is_empty(),
        "nothing ran before the decision"
    );
    let saved = serde_json::to_string(&interruption.state).unwrap();
    let state = serde_json::from_str(&saved).unwrap();
    let result = boss
        .resume_with_approvals(state, vec![("o1/d1".into(), decision)], &RunContext::new())
        .await
        .unwrap();
    let deleted = deleted.lock().unwrap().clone();
    (result, deleted)
}

#[tokio::test]
async fn an_approved_nested_call_runs_and_the_outer_run_finishes_as_one() {
    let (result, deleted) = pause_and_resume(Approval::Approve).await;
    assert_eq!(deleted, vec!["/tmp/x"]);
    assert_eq!(result.stop_reason, StopReason::Completed);
    assert_eq!(
        result.text, "janitor said: tool said: deleted /tmp/x",
        "the outer model read the nested run's real answer"
    );
    // The outer run's one call answered once; the nested run counted once.
    let results: Vec<_> = result
        .new_messages
        .iter()
        .filter_map(|m| m.as_tool_result())
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(result.sub_agents.len(), 1);
    assert_eq!(result.sub_agents[0].turn_usage.len(), 2);
}

#[tokio::test]
async fn a_rejected_nested_call_does_not_run_and_the_sub_agent_reads_why() {
    let (result, deleted) = pause_and_resume(Approval::Reject {
        message: "not today".into(),
    })
    .await;
    assert!(deleted.is_empty());
    assert!(
        result.text.contains("rejected this call: not today"),
        "{}",
        result.text
    );
}

#[tokio::test]
async fn an_edited_nested_call_runs_with_the_edited_arguments() {
    let (result, deleted) = pause_and_resume(Approval::Edit {
        args: json!({"path": "/tmp/y"}),
    })
    .await;
    assert_eq!(deleted, vec!["/tmp/y"]);
    assert!(result.text.ends_with("deleted /tmp/y"), "{}", result.text);
}

// Only its schema is used: the agent reads the fields as JSON.
#[allow(dead_code)]
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Research {
    /// What to find out.
    question: String,
    /// How many sources at most.
    max_sources: u32,
}

#[tokio::test]
async fn a_typed_agent_tool_offers_the_structs_schema_and_passes_the_checked_fields() {
    let inner = Arc::new(ScriptedModel::new().then_text("two sources"));
    let researcher = LlmAgent::builder(inner.clone())
        .name("researcher")
        .description("Finds sources.")
        .build()
        .unwrap();
    let tool = AgentTool::typed::<Research>(Arc::new(researcher)).unwrap();
    let outer_model = Arc::new(
        ScriptedModel::new()
            .then_response(call(
                "r",
                "researcher",
                json!({"question": "why", "max_sources": 2}),
            ))
            .then_response(call("r2", "researcher", json!({"question": "why"})))
            .then_text("ok"),
    );
    let outer = LlmAgent::builder(outer_model.clone())
        .tool(tool)
        .build()
        .unwrap();
    outer.ask("go").await.unwrap();
    let spec = &outer_model.requests()[0].tools[0];
    assert_eq!(
        spec.parameters["required"],
        json!(["question", "max_sources"])
    );
    let sent: serde_json::Value =
        serde_json::from_str(&inner.requests()[0].last_user_text().unwrap()).unwrap();
    assert_eq!(sent, json!({"question": "why", "max_sources": 2}));
    // The call missing a field was refused by the schema check, before the agent ran.
    assert_eq!(inner.requests().len(), 1);
    let refused = outer_model.requests()[2]
        .last_tool_results()
        .next()
        .unwrap()
        .clone();
    assert!(refused.is_error, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_parallel_sub_agents_under_a_shared_cap_never_spend_more_than_it() {
    use agent_core::run::{Budget, BudgetTracker, Price};
    let runs = AtomicU32::new(0);
    for _ in 0..30 {
        let mut prices = Prices::empty();
        prices.set("priced", Price::new(1.0, 1.0));
        let tracker = Arc::new(BudgetTracker::with_prices(
            Budget {
                max_cost_usd: Some(0.0008),
                ..Default::default()
            },
            prices,
        ));
        let mut outer = ScriptedModel::named("priced");
        let calls: Vec<ToolCall> = (0..8)
            .map(|n| {
                ToolCall::new(
                    format!("w{n}"),
                    format!("worker{n}"),
                    &json!({"input": "work"}),
                )
            })
            .collect();
        outer = outer
            .then_response(ChatResponse::tool_calls(calls))
            .then_text("all done");
        let mut builder = LlmAgent::builder(Arc::new(outer)).settings(agent_core::ModelSettings {
            max_output_tokens: Some(100),
            ..Default::default()
        });
        for n in 0..8 {
            let mut model = ScriptedModel::named("priced");
            for k in 0..4 {
                model = model.then_response(call(&format!("s{k}"), "step", json!({"k": k})));
            }
            let worker = LlmAgent::builder(Arc::new(model.then_text("worked")))
                .name(format!("worker{n}"))
                .description("Works.")
                .settings(agent_core::ModelSettings {
                    max_output_tokens: Some(100),
                    ..Default::default()
                })
                .tool(tool_fn("step", "A step.", |s: Step, _| async move {
                    tokio::task::yield_now().await;
                    Ok(format!("step {}", s.k))
                }))
                .build()
                .unwrap();
            builder = builder.tool(AgentTool::new(Arc::new(worker)).unwrap().parallel(true));
        }
        let outer = builder.build().unwrap();
        let _ = outer
            .run("go", &RunContext::new().with_budget(tracker.clone()))
            .await;
        let spent = tracker.spent();
        assert!(spent.cost_usd <= 0.0008, "spent {}", spent.cost_usd);
        runs.fetch_add(1, Ordering::Relaxed);
    }
    assert_eq!(runs.load(Ordering::Relaxed), 30);
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Step {
    k: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_agent_tools_of_one_turn_run_at_the_same_time() {
    // Each sub-agent's tool waits for the other's: one at a time, they would wait forever.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut outer = LlmAgent::builder(Arc::new(
        ScriptedModel::new()
            .then_response(ChatResponse::tool_calls(vec![
                ToolCall::new("a", "left", &json!({"input": "go"})),
                ToolCall::new("b", "right", &json!({"input": "go"})),
            ]))
            .then_text("both met"),
    ));
    for name in ["left", "right"] {
        let barrier = barrier.clone();
        let agent = LlmAgent::builder(Arc::new(
            ScriptedModel::new()
                .then_response(call("m", "meet", json!({"k": 1})))
                .then_text("met"),
        ))
        .name(name)
        .description("Meets the other.")
        .tool(tool_fn(
            "meet",
            "Waits for the other.",
            move |_: Step, _| {
                let barrier = barrier.clone();
                async move {
                    barrier.wait().await;
                    Ok("met")
                }
            },
        ))
        .build()
        .unwrap();
        outer = outer.tool(AgentTool::new(Arc::new(agent)).unwrap().parallel(true));
    }
    let outer = outer.build().unwrap();
    let result = tokio::time::timeout(std::time::Duration::from_secs(30), outer.ask("go"))
        .await
        .expect("the two sub-agents ran one after the other")
        .unwrap();
    assert_eq!(result.text, "both met");
    assert_eq!(result.sub_agents.len(), 2);
}

#[tokio::test]
async fn an_agent_tool_called_outside_a_run_reports_a_pause_as_an_error_not_a_success() {
    use agent_core::Tool;
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let janitor = LlmAgent::builder(Arc::new(janitor_model()))
        .name("janitor")
        .description("Cleans up.")
        .tool(tool_fn("delete", "Deletes a file.", move |d: Delete, _| {
            let deleted = deleted.clone();
            async move {
                deleted.lock().unwrap().push(d.path);
                Ok("deleted")
            }
        }))
        .approval_policy(|name, _| name == "delete")
        .build()
        .unwrap();
    let tool = AgentTool::new(Arc::new(janitor)).unwrap();
    let err = tool
        .call(
            json!({"input": "clean"}),
            &agent_core::ToolContext::detached(),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("paused for approval"),
        "{}",
        err.message
    );
}
