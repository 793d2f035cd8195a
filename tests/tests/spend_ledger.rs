//! The spend ledger: reservations against every budget of a chain, taken atomically before
//! each model call and settled after it, so runs sharing a budget cannot overshoot it
//! together; a model without a price is refused under a cost cap and reported as unknown
//! without one.

// Test helpers outside #[test] fns unwrap and panic: a failure is the test's verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use agent_core::prelude::*;
use agent_core::run::{Budget, BudgetKind, BudgetTracker, Price, Prices, RunEvent};
use agent_core::testing::ScriptedModel;
use agent_core::{ChatResponse, ModelSettings, ToolCall};
use futures::StreamExt;
use serde_json::json;

/// An agent whose model keeps calling `wait` (which yields, so that runs interleave) for
/// `calls` turns, then answers.
fn busy_agent(calls: usize, max_output_tokens: u32) -> LlmAgent {
    let mut model = ScriptedModel::named("priced");
    for n in 0..calls {
        model = model.then_response(ChatResponse::tool_calls(vec![ToolCall::new(
            format!("c{n}"),
            "wait",
            &json!({"n": n}),
        )]));
    }
    let model = model.then_text("done");
    LlmAgent::builder(Arc::new(model))
        .tool(tool_fn(
            "wait",
            "Waits a moment.",
            |w: Wait, _| async move {
                tokio::task::yield_now().await;
                Ok(format!("waited {}", w.n))
            },
        ))
        .settings(ModelSettings {
            max_output_tokens: Some(max_output_tokens),
            ..Default::default()
        })
        .build()
        .unwrap()
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Wait {
    n: u32,
}

fn priced(input: f64, output: f64) -> Prices {
    let mut prices = Prices::empty();
    prices.set("priced", Price::new(input, output));
    prices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_parallel_runs_under_a_shared_cost_cap_never_spend_more_than_it() {
    // A call's worst case here is a few hundred tokens at $1 per million: a cap of about
    // six calls' worth, for eight runs that would make eleven calls each.
    let cap = 0.0015;
    let mut refused_somewhere = 0;
    for round in 0..40 {
        let tracker = Arc::new(BudgetTracker::with_prices(
            Budget {
                max_cost_usd: Some(cap),
                ..Default::default()
            },
            priced(1.0, 1.0),
        ));
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let ctx = RunContext::new().with_budget(tracker.clone());
                tokio::spawn(async move { busy_agent(10, 200).run("go", &ctx).await })
            })
            .collect();
        for run in runs {
            match run.await.unwrap() {
                Ok(_) => {}
                Err(AgentError::BudgetExceeded { kind, .. }) => {
                    assert_eq!(kind, BudgetKind::Cost);
                    refused_somewhere += 1;
                }
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        let spent = tracker.spent();
        assert!(
            spent.cost_usd <= cap,
            "round {round}: spent {} of a {cap} cap",
            spent.cost_usd
        );
        assert!(spent.model_requests > 0);
    }
    assert!(
        refused_somewhere > 0,
        "the cap never bound: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_parallel_runs_under_a_shared_request_cap_make_exactly_that_many_calls() {
    for round in 0..40 {
        let tracker = Arc::new(BudgetTracker::new(Budget {
            max_model_requests: Some(13),
            ..Default::default()
        }));
        let runs: Vec<_> = (0..8)
            .map(|_| {
                let ctx = RunContext::new().with_budget(tracker.clone());
                tokio::spawn(async move { busy_agent(5, 50).run("go", &ctx).await })
            })
            .collect();
        for run in runs {
            let _ = run.await.unwrap();
        }
        assert_eq!(tracker.spent().model_requests, 13, "round {round}");
    }
}

#[tokio::test]
async fn a_budget_under_a_parent_books_in_both_and_each_limit_applies() {
    let parent = Arc::new(BudgetTracker::new(Budget {
        max_model_requests: Some(3),
        ..Default::default()
    }));
    // The agent's own budget would allow 10; the shared one above it stops the run at 3.
    let agent = LlmAgent::builder(busy_agent(5, 50).model().clone())
        .tool(tool_fn("wait", "Waits.", |w: Wait, _| async move {
            Ok(format!("waited {}", w.n))
        }))
        .budget(Budget {
            max_model_requests: Some(10),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = agent
        .run("go", &RunContext::new().with_budget(parent.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::BudgetExceeded {
                kind: BudgetKind::ModelRequests,
                limit: 3.0,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(parent.spent().model_requests, 3);
}

#[tokio::test]
async fn an_unpriced_model_under_a_cost_cap_is_refused_before_any_request() {
    let model = Arc::new(ScriptedModel::named("house-model").then_text("never sent"));
    let agent = LlmAgent::builder(model.clone())
        .budget(Budget {
            max_cost_usd: Some(1.0),
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = agent.ask("hi").await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`house-model` has no known price"), "{text}");
    assert!(text.contains("Prices::set(\"house-model\""), "{text}");
    assert!(model.requests().is_empty(), "no request was sent");
}

#[tokio::test]
async fn a_price_set_by_the_user_lets_the_same_model_run_under_the_cap() {
    let model = Arc::new(ScriptedModel::named("house-model").then_text("sent"));
    let mut prices = Prices::default();
    prices.set("house-model", Price::new(0.5, 1.5));
    let agent = LlmAgent::builder(model.clone())
        .budget(Budget {
            max_cost_usd: Some(1.0),
            ..Default::default()
        })
        .prices(prices)
        .build()
        .unwrap();
    assert_eq!(agent.ask("hi").await.unwrap().text, "sent");
}

#[tokio::test]
async fn without_a_cost_cap_an_unpriced_model_runs_and_its_cost_is_unknown_not_zero() {
    let model = Arc::new(ScriptedModel::named("house-model").then_text("fine"));
    let agent = LlmAgent::builder(model).build().unwrap();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = agent.run_stream("hi", &ctx).collect().await;
    let costs: Vec<Option<f64>> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::TurnFinished {
                cost_usd, model, ..
            } => {
                assert_eq!(model, "house-model");
                Some(*cost_usd)
            }
            _ => None,
        })
        .collect();
    assert_eq!(costs, vec![None]);
    let tracker = Arc::new(BudgetTracker::new(Budget {
        max_model_requests: Some(5),
        ..Default::default()
    }));
    let model = Arc::new(ScriptedModel::named("house-model").then_text("fine"));
    let agent = LlmAgent::builder(model).build().unwrap();
    agent
        .run("hi", &RunContext::new().with_budget(tracker.clone()))
        .await
        .unwrap();
    let spent = tracker.spent();
    assert_eq!((spent.unpriced_calls, spent.cost_usd), (1, 0.0));
}
