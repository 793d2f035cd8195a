//! Budgets: each limit trips at the right point, the run ends with its history (or wraps
//! up), and nested runs spend from the same budget.

use std::sync::Arc;
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{AgentError, ChatResponse, Message, StopReason};
use agent_tests::with_usage;
use agent_tools::Calculator;
use serde_json::json;

use agent_core::ToolCall;
use agent_core::run::{Budget, BudgetKind, BudgetTracker, OnBudgetExceeded, Price, Prices};

fn call(expr: &str) -> ChatResponse {
    ChatResponse::tool_calls(vec![ToolCall::new(
        "",
        "calculator",
        &json!({"expression": expr}),
    )])
}

fn exceeded(err: &AgentError) -> (BudgetKind, f64, f64, u32) {
    match err {
        AgentError::BudgetExceeded {
            kind,
            limit,
            used,
            partial,
        } => {
            agent_core::check_history(&partial.new_messages).unwrap();
            (*kind, *limit, *used, partial.turns)
        }
        other => panic!("{other:?}"),
    }
}

fn budget_agent(model: ScriptedModel, budget: Budget) -> LlmAgent {
    LlmAgent::builder(Arc::new(model))
        .tool(Calculator::new())
        .budget(budget)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_model_request_budget_trips_before_the_call_that_would_break_it() {
    let model = ScriptedModel::new()
        .then_response(call("1"))
        .then_response(call("2"))
        .then_text("never");
    let agent = budget_agent(
        model,
        Budget {
            max_model_requests: Some(2),
            ..Default::default()
        },
    );
    let (kind, limit, used, turns) = exceeded(&agent.ask("x").await.unwrap_err());
    assert_eq!(
        (kind, limit, used, turns),
        (BudgetKind::ModelRequests, 2.0, 3.0, 2)
    );
}

#[tokio::test]
async fn the_tool_call_budget_trips_before_the_batch_runs() {
    let model = ScriptedModel::new()
        .then_response(ChatResponse::tool_calls(vec![
            ToolCall::new("a", "calculator", &json!({"expression": "1"})),
            ToolCall::new("b", "calculator", &json!({"expression": "2"})),
        ]))
        .then_text("never");
    let agent = budget_agent(
        model,
        Budget {
            max_tool_calls: Some(1),
            ..Default::default()
        },
    );
    let err = agent.ask("x").await.unwrap_err();
    assert_eq!(exceeded(&err).0, BudgetKind::ToolCalls);
    let results: Vec<_> = err
        .partial()
        .unwrap()
        .new_messages
        .iter()
        .filter_map(Message::as_tool_result)
        .collect();
    assert!(
        results
            .iter()
            .all(|r| r.is_error && r.content.contains("budget")),
        "{results:?}"
    );
}

#[tokio::test]
async fn token_budgets_trip_on_real_usage_after_the_call() {
    for (budget, expected) in [
        (
            Budget {
                max_input_tokens: Some(1500),
                ..Default::default()
            },
            BudgetKind::InputTokens,
        ),
        (
            Budget {
                max_output_tokens: Some(150),
                ..Default::default()
            },
            BudgetKind::OutputTokens,
        ),
        (
            Budget {
                max_total_tokens: Some(1700),
                ..Default::default()
            },
            BudgetKind::TotalTokens,
        ),
    ] {
        let model = ScriptedModel::new()
            .then_response(with_usage(call("1"), 1000, 100))
            .then_response(with_usage(call("2"), 1000, 100))
            .then_text("never");
        let (kind, _, _, turns) =
            exceeded(&budget_agent(model, budget).ask("x").await.unwrap_err());
        assert_eq!((kind, turns), (expected, 2));
    }
}

#[tokio::test]
async fn the_cost_budget_uses_the_price_table_and_is_shared_with_nested_runs() {
    let mut prices = Prices::empty();
    prices.set("scripted", Price::new(1.0, 1.0));
    let tracker = Arc::new(BudgetTracker::with_prices(
        Budget {
            max_cost_usd: Some(0.25),
            ..Default::default()
        },
        prices,
    ));
    // The inner agent spends 0.2 $ of the shared budget; the outer's next call breaks it.
    let inner = LlmAgent::builder(Arc::new(ScriptedModel::new().then_response(with_usage(
        ChatResponse::text("found"),
        200_000,
        0,
    ))))
    .name("researcher")
    .description("Finds things.")
    .build()
    .unwrap();
    let outer = LlmAgent::builder(Arc::new(
        ScriptedModel::new()
            .then_response(with_usage(
                ChatResponse::tool_calls(vec![ToolCall::new(
                    "r",
                    "researcher",
                    &json!({"input": "go"}),
                )]),
                10_000,
                0,
            ))
            .then_response(with_usage(call("1"), 100_000, 0))
            .then_text("never"),
    ))
    .tool(agent_core::AgentTool::new(Arc::new(inner)).unwrap())
    .tool(Calculator::new())
    .build()
    .unwrap();
    let err = outer
        .run("x", &RunContext::new().with_budget(tracker.clone()))
        .await
        .unwrap_err();
    let (kind, limit, used, _) = exceeded(&err);
    assert_eq!(kind, BudgetKind::Cost);
    assert_eq!(limit, 0.25);
    assert!((used - 0.31).abs() < 1e-9, "{used}");
    assert_eq!(tracker.spent().model_requests, 3);
}

#[tokio::test]
async fn the_time_budget_trips_at_the_next_check() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct NoArgs {}
    let slow = tool_fn("slow", "Takes a while.", |_: NoArgs, _| async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok("done")
    });
    let model = ScriptedModel::new()
        .then_tool_call("slow", json!({}))
        .then_text("never");
    let agent = LlmAgent::builder(Arc::new(model))
        .tool(slow)
        .budget(Budget {
            max_duration: Some(Duration::from_millis(20)),
            ..Default::default()
        })
        .build()
        .unwrap();
    let (kind, _, _, turns) = exceeded(&agent.ask("x").await.unwrap_err());
    assert_eq!((kind, turns), (BudgetKind::Duration, 1));
}

#[tokio::test]
async fn an_exceeded_budget_can_end_with_a_wrap_up_answer_instead() {
    let model = ScriptedModel::new()
        .then_response(call("1"))
        .then_reply(|req| {
            assert_eq!(req.tool_choice, agent_core::ToolChoice::None);
            Ok(ChatResponse::text("best effort"))
        });
    let budget = Budget {
        max_model_requests: Some(1),
        on_exceeded: OnBudgetExceeded::WrapUp,
        ..Default::default()
    };
    let result = budget_agent(model, budget).ask("x").await.unwrap();
    assert_eq!(result.text, "best effort");
    assert_eq!(result.stop_reason, StopReason::BudgetExhausted);
    assert_eq!(result.turns, 2);
}

#[tokio::test]
async fn a_wrap_up_answer_that_still_calls_tools_ends_the_run_with_its_text() {
    // Over budget on every call; the wrap-up answer ignores "no tools" and calls one anyway.
    let model = ScriptedModel::new()
        .then_response(with_usage(call("1"), 1000, 10))
        .then_response(ChatResponse {
            message: agent_core::AssistantMessage::with_tool_calls(
                "here is what I have",
                vec![ToolCall::new(
                    "x",
                    "calculator",
                    &json!({"expression": "2"}),
                )],
            ),
            ..with_usage(ChatResponse::default(), 1000, 10)
        });
    let budget = Budget {
        max_input_tokens: Some(500),
        on_exceeded: OnBudgetExceeded::WrapUp,
        ..Default::default()
    };
    let result = budget_agent(model, budget).ask("x").await.unwrap();
    assert_eq!(result.text, "here is what I have");
    assert_eq!(result.stop_reason, StopReason::BudgetExhausted);
    agent_core::check_history(&result.new_messages).unwrap();
}
