//! Handoffs: a `transfer_to_<name>` call moves the conversation to another agent of the
//! team; its instructions and only its tools apply from the next call; the first transfer
//! of a turn wins; ping-pong stops at the limit; a run saved mid-handoff resumes elsewhere.

// Test helpers outside #[test] fns unwrap and panic: a failure is the test's verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use agent_core::prelude::*;
use agent_core::run::RunEvent;
use agent_core::testing::ScriptedModel;
use agent_core::{
    Action, Approval, ChatResponse, Handoff, Input, Message, RunState, StopReason, Team, ToolCall,
    ToolSet,
};
use serde_json::json;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct Id {
    id: u32,
}

fn calls(list: &[(&str, &str)]) -> ChatResponse {
    ChatResponse::tool_calls(
        list.iter()
            .map(|(id, name)| {
                let args = if name.starts_with("transfer_to_") {
                    json!({})
                } else {
                    json!({"id": 7})
                };
                ToolCall::new(*id, *name, &args)
            })
            .collect(),
    )
}

/// triage (tool `lookup`, handoffs to billing and tech) and billing (tool `refund`), each
/// on its own scripted model; tech answers at once.
fn team(triage: ScriptedModel, billing: ScriptedModel) -> (Team, Arc<ScriptedModel>) {
    let billing_model = Arc::new(billing);
    let triage = LlmAgent::builder(Arc::new(triage))
        .name("triage")
        .instructions("You route requests.")
        .tool(tool_fn(
            "lookup",
            "Looks up an order.",
            |a: Id, _| async move { Ok(format!("order {}", a.id)) },
        ))
        .handoff(Handoff::to("billing").description("Invoices and refunds."))
        .handoff(Handoff::to("tech"))
        .build()
        .unwrap();
    let billing = LlmAgent::builder(billing_model.clone())
        .name("billing")
        .instructions("You handle refunds.")
        .tool(tool_fn(
            "refund",
            "Refunds an order.",
            |a: Id, _| async move { Ok(format!("refunded {}", a.id)) },
        ))
        .build()
        .unwrap();
    let tech = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("tech here")))
        .name("tech")
        .instructions("You fix things.")
        .build()
        .unwrap();
    let team = Team::new([Arc::new(triage), Arc::new(billing), Arc::new(tech)]).unwrap();
    (team, billing_model)
}

fn tool_results(messages: &[Message]) -> Vec<(String, String, bool)> {
    messages
        .iter()
        .filter_map(Message::as_tool_result)
        .map(|r| (r.call_id.clone(), r.content.clone(), r.is_error))
        .collect()
}

#[tokio::test]
async fn after_a_transfer_the_next_request_has_the_new_instructions_and_only_the_new_tools() {
    let (team, billing) = team(
        ScriptedModel::new().then_response(calls(&[("t1", "transfer_to_billing")])),
        ScriptedModel::new().then_text("Refund started."),
    );
    let result = team
        .run("triage", "refund me", &RunContext::new())
        .await
        .unwrap();
    assert_eq!(result.text, "Refund started.");
    // The transfer call got exactly one result.
    assert_eq!(
        tool_results(&result.new_messages),
        vec![("t1".into(), "Transferred to `billing`.".into(), false)]
    );
    let request = &billing.requests()[0];
    assert_eq!(request.messages[0].text(), "You handle refunds.");
    assert!(
        request
            .messages
            .iter()
            .filter(|m| matches!(m, Message::System { .. }))
            .count()
            == 1,
        "one system message: the new agent's"
    );
    let names: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["refund"]);
}

#[tokio::test]
async fn a_call_to_a_tool_of_the_previous_agent_is_refused_cleanly() {
    let (team, billing) = team(
        ScriptedModel::new().then_response(calls(&[("t1", "transfer_to_billing")])),
        ScriptedModel::new()
            .then_response(calls(&[("l1", "lookup")]))
            .then_response(calls(&[("r1", "refund")]))
            .then_text("done"),
    );
    let result = team
        .run("triage", "refund me", &RunContext::new())
        .await
        .unwrap();
    let results = tool_results(&result.new_messages);
    assert_eq!(results.len(), 3);
    let (id, content, is_error) = &results[1];
    assert_eq!(id, "l1");
    assert!(*is_error && content.contains("lookup"), "{content}");
    assert_eq!(results[2], ("r1".into(), "refunded 7".into(), false));
    assert_eq!(billing.requests().len(), 3);
}

#[tokio::test]
async fn the_first_of_two_transfers_in_one_turn_wins_and_the_other_is_told_why() {
    let (team, _) = team(
        ScriptedModel::new().then_response(calls(&[
            ("t1", "transfer_to_tech"),
            ("t2", "transfer_to_billing"),
        ])),
        ScriptedModel::new(),
    );
    let result = team
        .run("triage", "help", &RunContext::new())
        .await
        .unwrap();
    assert_eq!(result.text, "tech here");
    let results = tool_results(&result.new_messages);
    assert_eq!(
        results[0],
        ("t1".into(), "Transferred to `tech`.".into(), false)
    );
    let (id, content, is_error) = &results[1];
    assert_eq!(id, "t2");
    assert!(*is_error, "{content}");
    assert!(
        content.contains("already transferred the conversation to `tech`"),
        "{content}"
    );
}

fn ping_pong_agent(name: &str, other: &str, turns: usize) -> LlmAgent {
    let mut model = ScriptedModel::new();
    for n in 0..turns {
        model = model.then_response(calls(&[(
            &format!("{name}{n}"),
            &format!("transfer_to_{other}"),
        )]));
    }
    LlmAgent::builder(Arc::new(model))
        .name(name)
        .handoff(Handoff::to(other))
        .limits(agent_core::RunLimits {
            max_handoffs: 3,
            ..Default::default()
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn agents_handing_back_and_forth_stop_at_the_handoff_limit_with_a_typed_reason() {
    let team = Team::new([
        Arc::new(ping_pong_agent("a", "b", 5)),
        Arc::new(ping_pong_agent("b", "a", 5)),
    ])
    .unwrap();
    let err = team.run("a", "go", &RunContext::new()).await.unwrap_err();
    let AgentError::HandoffLimit { limit, partial } = &err else {
        panic!("{err}");
    };
    assert_eq!(*limit, 3);
    assert_eq!(
        partial.turns, 4,
        "three handoffs, and the turn that asked for a fourth"
    );
    agent_core::check_history(&partial.new_messages).unwrap();
    let last = tool_results(&partial.new_messages).pop().unwrap();
    assert!(last.2 && last.1.contains("limit of 3 handoffs"), "{last:?}");
}

#[tokio::test]
async fn the_input_filter_shapes_what_the_new_agent_sees_and_the_callback_hears_of_it() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let heard = seen.clone();
    let billing_model = Arc::new(ScriptedModel::new().then_text("ok"));
    let triage = LlmAgent::builder(Arc::new(
        ScriptedModel::new()
            .then_response(calls(&[("l1", "lookup")]))
            .then_response(calls(&[("t1", "transfer_to_billing")])),
    ))
    .name("triage")
    .instructions("Route.")
    .tool(tool_fn("lookup", "Looks up.", |a: Id, _| async move {
        Ok(format!("order {}", a.id))
    }))
    .handoff(
        Handoff::to("billing")
            .input_filter(|conversation: &[Message]| {
                conversation
                    .iter()
                    .filter(|m| matches!(m, Message::User { .. }))
                    .cloned()
                    .collect()
            })
            .on_handoff(move |info| {
                heard.lock().unwrap().push(format!(
                    "{}->{} after {} messages",
                    info.from,
                    info.to,
                    info.conversation.len()
                ));
            }),
    )
    .build()
    .unwrap();
    let billing = LlmAgent::builder(billing_model.clone())
        .name("billing")
        .instructions("Refunds.")
        .build()
        .unwrap();
    let team = Team::new([Arc::new(triage), Arc::new(billing)]).unwrap();
    let ctx = RunContext::new();
    let result = team.run("triage", "refund order 7", &ctx).await.unwrap();
    assert_eq!(result.text, "ok");
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec!["triage->billing after 5 messages"]
    );
    let request = &billing_model.requests()[0];
    let texts: Vec<String> = request.messages.iter().map(Message::text).collect();
    assert_eq!(texts, vec!["Refunds.", "refund order 7"]);
    // The run keeps what the filter kept.
    assert_eq!(result.new_messages.len(), 2);
}

#[tokio::test]
async fn a_run_saved_in_the_middle_of_a_handoff_resumes_in_another_team_with_the_same_agents() {
    // The turn transfers to billing and makes a call that needs approval: the run pauses
    // with the transfer decided but not done.
    let build = |billing_answer: &str| {
        let triage = LlmAgent::builder(Arc::new(
            ScriptedModel::new()
                .then_response(calls(&[("t1", "transfer_to_billing"), ("l1", "lookup")])),
        ))
        .name("triage")
        .tool(tool_fn("lookup", "Looks up.", |a: Id, _| async move {
            Ok(format!("order {}", a.id))
        }))
        .approval_policy(|name, _| name == "lookup")
        .handoff(Handoff::to("billing"))
        .build()
        .unwrap();
        let billing = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text(billing_answer)))
            .name("billing")
            .instructions("Refunds.")
            .build()
            .unwrap();
        Team::new([Arc::new(triage), Arc::new(billing)]).unwrap()
    };
    let first = build("never asked");
    let paused = first
        .run("triage", "refund", &RunContext::new())
        .await
        .unwrap();
    assert_eq!(paused.stop_reason, StopReason::AwaitingApproval);
    let saved = serde_json::to_string(&paused.interruption.unwrap().state).unwrap();
    // Another process: a fresh team of agents with the same names.
    let second = build("billing took over");
    let state: RunState = serde_json::from_str(&saved).unwrap();
    let result = second
        .resume_with_approvals(
            "triage",
            state,
            vec![("l1".into(), Approval::Approve)],
            &RunContext::new(),
        )
        .await
        .unwrap();
    assert_eq!(result.text, "billing took over");
    assert_eq!(
        tool_results(&result.new_messages),
        vec![
            ("t1".into(), "Transferred to `billing`.".into(), false),
            ("l1".into(), "order 7".into(), false),
        ]
    );
}

#[test]
fn a_state_saved_at_the_handoff_hands_off_again_when_resumed() {
    let triage = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .name("triage")
        .handoff(Handoff::to("billing"))
        .build()
        .unwrap();
    let tools = triage.tools();
    let mut state = triage.start("refund", &[]);
    assert!(matches!(
        state.step(&tools, Input::Resume),
        Action::CallModel(_)
    ));
    let action = state.step(
        &tools,
        Input::ModelResponse(calls(&[("t1", "transfer_to_billing")])),
    );
    assert!(
        matches!(&action, Action::HandOff { to } if to == "billing"),
        "{action:?}"
    );
    let mut restored: RunState =
        serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    assert!(
        matches!(restored.step(&tools, Input::Resume), Action::HandOff { to } if to == "billing")
    );
    let action = restored.step(
        &ToolSet::empty(),
        Input::HandedOff {
            agent: "billing".into(),
            instructions: Some("Refunds.".into()),
            conversation: None,
        },
    );
    let Action::CallModel(request) = action else {
        panic!("{action:?}")
    };
    assert_eq!(request.messages[0].text(), "Refunds.");
    assert_eq!(restored.active_agent(), Some("billing"));
    assert_eq!(restored.handoffs(), 1);
}

#[tokio::test]
async fn a_handoff_outside_a_team_stops_the_run_and_says_how_to_fix_it() {
    let triage = LlmAgent::builder(Arc::new(
        ScriptedModel::new().then_response(calls(&[("t1", "transfer_to_billing")])),
    ))
    .name("triage")
    .handoff(Handoff::to("billing"))
    .build()
    .unwrap();
    let err = triage.ask("refund").await.unwrap_err();
    assert!(err.to_string().contains("through a `Team`"), "{err}");
}

#[test]
fn a_team_refuses_a_handoff_to_an_agent_it_does_not_have() {
    let triage = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .name("triage")
        .handoff(Handoff::to("billing"))
        .build()
        .unwrap();
    let err = Team::new([Arc::new(triage)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`triage` hands off to `billing`, which is not in the team"
    );
}

#[tokio::test]
async fn the_handoff_is_an_event_between_the_two_agents_turns() {
    let (team, _) = team(
        ScriptedModel::new().then_response(calls(&[("t1", "transfer_to_tech")])),
        ScriptedModel::new(),
    );
    let ctx = RunContext::new();
    let events: Vec<RunEvent> =
        futures::StreamExt::collect(team.run_stream("triage", "help", &ctx)).await;
    let handoffs: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            RunEvent::Handoff { from, to } => Some((from.clone(), to.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(handoffs, vec![("triage".into(), "tech".into())]);
}
