//! Run control: events, human approval, stuck-loop detection, hooks, guardrails and
//! cancellation, each tested on its own with the scripted model.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{
    AgentError, Approval, ChatRequest, ChatResponse, ChatStream, HookAction, Message, ModelError,
    OutputCheck, RunEvent, RunHooks, RunState, StopReason, StreamEvent, ToolHookAction,
    ToolInvocation,
};
use agent_tools::Calculator;
use futures::StreamExt;
use serde_json::json;

fn calculator_agent(model: Arc<ScriptedModel>) -> agent_core::LlmAgentBuilder {
    LlmAgent::builder(model).tool(Calculator::new())
}

fn kind(event: &RunEvent) -> String {
    match event {
        RunEvent::TurnStarted { turn } => format!("turn{turn}"),
        RunEvent::TextDelta(t) => format!("text:{t}"),
        RunEvent::ReasoningDelta(_) => "reasoning".into(),
        RunEvent::ToolCallStarted { name, .. } => format!("start:{name}"),
        RunEvent::ToolCallFinished { content, .. } => format!("done:{content}"),
        RunEvent::TurnFinished { turn, .. } => format!("end{turn}"),
        RunEvent::ApprovalRequested(p) => format!("approval:{}", p.len()),
        RunEvent::Finished(r) => format!("finished:{}", r.text),
        RunEvent::Failed(e) => format!("failed:{e}"),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------- events

#[tokio::test]
async fn events_of_a_two_turn_run_come_in_order() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "6*7"}))
            .then_text("42"),
    );
    let agent = calculator_agent(model).build().unwrap();
    let ctx = RunContext::new();
    let events: Vec<String> = agent
        .run_stream("6*7?", &ctx)
        .map(|e| kind(&e))
        .collect()
        .await;
    assert_eq!(
        events,
        [
            "turn1",
            "end1",
            "start:calculator",
            "done:42",
            "turn2",
            "text:42",
            "end2",
            "finished:42"
        ]
    );
}

/// A model that streams its answer in pieces, and can stall forever after the first.
struct Trickle {
    pieces: Vec<&'static str>,
    stall: bool,
}

#[agent_core::async_trait]
impl ChatModel for Trickle {
    fn provider(&self) -> &str {
        "test"
    }
    fn model(&self) -> &str {
        "trickle"
    }
    async fn chat(&self, _: &ChatRequest) -> Result<ChatResponse, ModelError> {
        Ok(ChatResponse::text(self.pieces.concat()))
    }
    async fn chat_stream(&self, _: &ChatRequest) -> Result<ChatStream, ModelError> {
        let mut events: Vec<Result<StreamEvent, ModelError>> = self
            .pieces
            .iter()
            .map(|p| Ok(StreamEvent::TextDelta((*p).to_owned())))
            .collect();
        let stall = self.stall;
        events.push(Ok(StreamEvent::Completed(ChatResponse::text(
            self.pieces.concat(),
        ))));
        let stream = futures::stream::iter(events).then(move |e| async move {
            if stall && matches!(e, Ok(StreamEvent::Completed(_))) {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            e
        });
        Ok(Box::pin(stream))
    }
}

#[tokio::test]
async fn a_streaming_model_gives_text_deltas_as_they_arrive() {
    let agent = LlmAgent::builder(Arc::new(Trickle {
        pieces: vec!["Hel", "lo", "!"],
        stall: false,
    }))
    .streaming(true)
    .build()
    .unwrap();
    let ctx = RunContext::new();
    let events: Vec<String> = agent
        .run_stream("hi", &ctx)
        .map(|e| kind(&e))
        .collect()
        .await;
    assert_eq!(
        events,
        [
            "turn1",
            "text:Hel",
            "text:lo",
            "text:!",
            "end1",
            "finished:Hello!"
        ]
    );
}

#[tokio::test]
async fn cancelling_during_a_model_stream_returns_promptly() {
    let agent = LlmAgent::builder(Arc::new(Trickle {
        pieces: vec!["partial"],
        stall: true,
    }))
    .streaming(true)
    .build()
    .unwrap();
    let ctx = RunContext::new();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let events: Vec<RunEvent> = agent.run_stream("hi", &ctx).collect().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, RunEvent::TextDelta(t) if t == "partial"))
    );
    assert!(matches!(
        events.last(),
        Some(RunEvent::Failed(AgentError::Cancelled { .. }))
    ));
}

// ---------------------------------------------------------------- approval

fn approval_agent(model: Arc<ScriptedModel>) -> LlmAgent {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct Send {
        to: String,
        #[allow(dead_code)]
        body: String,
    }
    let send = tool_fn("send_email", "Sends an email.", |a: Send, _| async move {
        Ok(format!("sent to {}", a.to))
    })
    .with_meta(ToolMeta::side_effecting().with_approval());
    LlmAgent::builder(model)
        .tool(send)
        .tool(Calculator::new())
        .build()
        .unwrap()
}

fn last_result(messages: &[Message]) -> String {
    messages
        .iter()
        .rev()
        .find_map(Message::as_tool_result)
        .unwrap()
        .content
        .clone()
}

#[tokio::test]
async fn a_call_needing_approval_pauses_and_approve_runs_it() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_calls([
                ("send_email", json!({"to": "ada@example.com", "body": "hi"})),
                ("calculator", json!({"expression": "1+1"})),
            ])
            .then_reply(|req| {
                Ok(ChatResponse::text(
                    req.last_tool_results()
                        .map(|r| r.content.clone())
                        .collect::<Vec<_>>()
                        .join("; "),
                ))
            }),
    );
    let agent = approval_agent(model.clone());
    let ctx = RunContext::new();
    let paused = agent.run("email Ada", &ctx).await.unwrap();
    assert_eq!(paused.stop_reason, StopReason::AwaitingApproval);
    let interruption = paused.interruption.unwrap();
    assert_eq!(
        interruption.pending.len(),
        1,
        "only the side-effecting call waits"
    );
    assert_eq!(interruption.pending[0].name, "send_email");
    assert_eq!(model.requests().len(), 1);

    let call_id = interruption.pending[0].call_id.clone();
    let done = agent
        .resume_with_approvals(interruption.state, vec![(call_id, Approval::Approve)], &ctx)
        .await
        .unwrap();
    assert_eq!(done.stop_reason, StopReason::Completed);
    assert_eq!(done.text, "sent to ada@example.com; 2");
    model.assert_complete();
}

#[tokio::test]
async fn a_rejected_call_is_not_run_and_the_model_reads_why() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call(
                "send_email",
                json!({"to": "boss@example.com", "body": "I quit"}),
            )
            .then_text("ok, not sent"),
    );
    let agent = approval_agent(model.clone());
    let ctx = RunContext::new();
    let paused = agent.run("email", &ctx).await.unwrap();
    let i = paused.interruption.unwrap();
    let decision = Approval::Reject {
        message: "not to the boss".into(),
    };
    let done = agent
        .resume_with_approvals(
            i.state,
            vec![(i.pending[0].call_id.clone(), decision)],
            &ctx,
        )
        .await
        .unwrap();
    assert_eq!(
        last_result(&done.new_messages),
        "Error: the user rejected this call: not to the boss"
    );
    assert_eq!(done.text, "ok, not sent");
}

#[tokio::test]
async fn an_edited_call_runs_with_the_new_arguments_after_a_serialisation_round_trip() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call(
                "send_email",
                json!({"to": "wrong@example.com", "body": "hi"}),
            )
            .then_reply(|req| {
                Ok(ChatResponse::text(
                    req.last_tool_results().next().unwrap().content.clone(),
                ))
            }),
    );
    let agent = approval_agent(model.clone());
    let ctx = RunContext::new();
    let paused = agent.run("email", &ctx).await.unwrap();
    let i = paused.interruption.unwrap();
    // Another process: the state travels as JSON.
    let saved = serde_json::to_string(&i.state).unwrap();
    let state: RunState = serde_json::from_str(&saved).unwrap();
    let edit = Approval::Edit {
        args: json!({"to": "right@example.com", "body": "hi"}),
    };
    let done = agent
        .resume_with_approvals(state, vec![(i.pending[0].call_id.clone(), edit)], &ctx)
        .await
        .unwrap();
    assert_eq!(done.text, "sent to right@example.com");
}

#[tokio::test]
async fn malformed_arguments_go_to_the_human_not_the_tool() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_raw_tool_call("send_email", r#"{"to": 42"#)
            .then_text("could not send"),
    );
    let agent = approval_agent(model);
    let ctx = RunContext::new();
    let paused = agent.run("email", &ctx).await.unwrap();
    let i = paused.interruption.unwrap();
    assert!(
        i.pending[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("not valid JSON")
    );
    let done = agent
        .resume_with_approvals(
            i.state,
            vec![(i.pending[0].call_id.clone(), Approval::Approve)],
            &ctx,
        )
        .await
        .unwrap();
    assert!(
        last_result(&done.new_messages)
            .starts_with("Error: the arguments were invalid, so the call was not run")
    );
}

#[tokio::test]
async fn an_approval_policy_picks_calls_by_arguments() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "1+1"}))
            .then_tool_call("calculator", json!({"expression": "10^100"}))
            .then_text("done"),
    );
    let agent = LlmAgent::builder(model)
        .tool(Calculator::new())
        .approval_policy(|_, args| {
            args.is_none_or(|a| a["expression"].as_str().unwrap_or("").contains('^'))
        })
        .build()
        .unwrap();
    let paused = agent.ask("go").await.unwrap();
    let i = paused.interruption.unwrap();
    assert_eq!(i.pending[0].arguments, r#"{"expression":"10^100"}"#);
    assert_eq!(paused.turns, 2);
}

// ---------------------------------------------------------------- stuck loops

#[tokio::test]
async fn the_same_call_with_the_same_result_is_flagged_then_stopped() {
    let mut script = ScriptedModel::new();
    for _ in 0..4 {
        script = script.then_tool_call("calculator", json!({"expression": "2+2"}));
    }
    let model = Arc::new(script.then_text("never"));
    let agent = calculator_agent(model.clone()).build().unwrap();
    let err = agent.ask("loop").await.unwrap_err();
    let AgentError::StuckLoop {
        tool,
        repeats,
        partial,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((tool.as_str(), *repeats), ("calculator", 4));
    let results: Vec<_> = partial
        .new_messages
        .iter()
        .filter_map(Message::as_tool_result)
        .collect();
    assert!(
        results[2]
            .content
            .starts_with("4\n\nNote: `calculator` has now been called 3 times in a row"),
        "{}",
        results[2].content
    );
    assert!(!results[1].content.contains("Note"));
    agent_core::check_history(&partial.new_messages).unwrap();
}

#[tokio::test]
async fn a_repeated_call_with_changing_results_is_legitimate() {
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    struct NoArgs {}
    let tick = tool_fn("tick", "Counts.", move |_: NoArgs, _| {
        let c = c.clone();
        async move { Ok(c.fetch_add(1, Ordering::SeqCst) as i64) }
    });
    let mut script = ScriptedModel::new();
    for _ in 0..6 {
        script = script.then_tool_call("tick", json!({}));
    }
    let agent = LlmAgent::builder(Arc::new(script.then_text("done")))
        .tool(tick)
        .build()
        .unwrap();
    assert_eq!(agent.ask("tick").await.unwrap().text, "done");
    assert_eq!(counter.load(Ordering::SeqCst), 6);
}

// ---------------------------------------------------------------- hooks

struct Scripted {
    before_model: Option<HookAction>,
    after_model: Option<HookAction>,
    before_tool: Option<ToolHookAction>,
    after_tool: Option<ToolHookAction>,
}

impl Scripted {
    fn none() -> Self {
        Scripted {
            before_model: None,
            after_model: None,
            before_tool: None,
            after_tool: None,
        }
    }
}

#[agent_core::async_trait]
impl RunHooks for Scripted {
    async fn before_model(&self, _: &ChatRequest) -> HookAction {
        self.before_model.clone().unwrap_or(HookAction::Continue)
    }
    async fn after_model(&self, _: &ChatResponse) -> HookAction {
        self.after_model.clone().unwrap_or(HookAction::Continue)
    }
    async fn before_tool(&self, _: &ToolInvocation) -> ToolHookAction {
        self.before_tool.clone().unwrap_or(ToolHookAction::Continue)
    }
    async fn after_tool(
        &self,
        _: &ToolInvocation,
        _: &Result<ToolOutput, ToolError>,
    ) -> ToolHookAction {
        self.after_tool.clone().unwrap_or(ToolHookAction::Continue)
    }
}

fn one_call() -> Arc<ScriptedModel> {
    Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "1+1"}))
            .then_reply(|req| {
                Ok(ChatResponse::text(
                    req.last_tool_results().next().unwrap().content.clone(),
                ))
            }),
    )
}

#[tokio::test]
async fn a_hook_can_stop_before_and_after_a_model_call() {
    let agent = calculator_agent(one_call())
        .hook(Scripted {
            before_model: Some(HookAction::Stop("budget".into())),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    assert!(
        matches!(&err, AgentError::Stopped { reason, partial } if reason == "budget" && partial.turns == 0),
        "{err:?}"
    );

    let agent = calculator_agent(one_call())
        .hook(Scripted {
            after_model: Some(HookAction::Stop("looked bad".into())),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    let AgentError::Stopped { partial, .. } = &err else {
        panic!("{err:?}")
    };
    // The answer is in the history, its call answered.
    assert_eq!(partial.turns, 1);
    agent_core::check_history(&partial.new_messages).unwrap();
    assert!(last_result(&partial.new_messages).contains("stopped"));
}

#[tokio::test]
async fn a_hook_stopping_after_a_final_answer_keeps_the_answer_in_the_history() {
    let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("leaked secret")))
        .hook(Scripted {
            after_model: Some(HookAction::Stop("leak".into())),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    let AgentError::Stopped { reason, partial } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reason, "leak");
    assert_eq!(partial.new_messages.len(), 2);
    assert_eq!(partial.turns, 1);
}

#[tokio::test]
async fn a_hook_can_skip_a_tool_with_its_own_result() {
    let agent = calculator_agent(one_call())
        .hook(Scripted {
            before_tool: Some(ToolHookAction::Skip(Ok("cached: 2".into()))),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    assert_eq!(agent.ask("x").await.unwrap().text, "cached: 2");
}

#[tokio::test]
async fn a_hook_can_rewrite_the_arguments() {
    let agent = calculator_agent(one_call())
        .hook(Scripted {
            before_tool: Some(ToolHookAction::RewriteArgs(json!({"expression": "40+2"}))),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    assert_eq!(agent.ask("x").await.unwrap().text, "42");
}

#[tokio::test]
async fn a_hook_can_stop_the_run_at_a_tool_call() {
    let agent = calculator_agent(one_call())
        .hook(Scripted {
            before_tool: Some(ToolHookAction::Stop("no tools today".into())),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    let AgentError::Stopped { reason, partial } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reason, "no tools today");
    agent_core::check_history(&partial.new_messages).unwrap();
}

#[tokio::test]
async fn a_hook_can_replace_a_result() {
    let agent = calculator_agent(one_call())
        .hook(Scripted {
            after_tool: Some(ToolHookAction::Skip(Ok("redacted".into()))),
            ..Scripted::none()
        })
        .build()
        .unwrap();
    assert_eq!(agent.ask("x").await.unwrap().text, "redacted");
}

// ---------------------------------------------------------------- guardrails

#[tokio::test]
async fn an_input_guardrail_refuses_before_any_model_call() {
    let model = Arc::new(ScriptedModel::new().then_text("never"));
    let agent = LlmAgent::builder(model.clone())
        .input_guardrail(|input| {
            if input.contains("password") {
                Err("no secrets".into())
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    let err = agent.ask("my password is hunter2").await.unwrap_err();
    assert!(matches!(err, AgentError::InputRejected(ref r) if r == "no secrets"));
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn an_output_guardrail_sends_feedback_and_accepts_the_retry() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("The answer is probably 41.")
            .then_text("The answer is 42."),
    );
    let agent = LlmAgent::builder(model.clone())
        .instructions("Be exact.")
        .output_guardrail(|text| {
            if text.contains("probably") {
                OutputCheck::Retry("Be certain.".into())
            } else {
                OutputCheck::Accept
            }
        })
        .build()
        .unwrap();
    let result = agent.ask("answer?").await.unwrap();
    assert_eq!(result.text, "The answer is 42.");
    let second = &model.requests()[1];
    let texts: Vec<String> = second.messages.iter().map(Message::text).collect();
    assert_eq!(
        texts,
        [
            "Be exact.",
            "answer?",
            "The answer is probably 41.",
            "Be certain."
        ]
    );
    assert_eq!(result.turns, 2);
    // The run's own messages: input, first answer, feedback, final answer.
    assert_eq!(result.new_messages.len(), 4);
}

#[tokio::test]
async fn an_output_guardrail_rejects_and_retries_are_bounded() {
    let model = Arc::new(ScriptedModel::new().then_text("bad").then_text("bad again"));
    let agent = LlmAgent::builder(model.clone())
        .output_guardrail(|_| OutputCheck::Retry("try again".into()))
        .max_output_retries(1)
        .build()
        .unwrap();
    let err = agent.ask("x").await.unwrap_err();
    let AgentError::OutputRejected { reason, partial } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reason, "try again");
    assert_eq!(partial.turns, 2);
    model.assert_complete();

    let agent = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("rude")))
        .output_guardrail(|_| OutputCheck::Reject("impolite".into()))
        .build()
        .unwrap();
    assert!(
        matches!(agent.ask("x").await.unwrap_err(), AgentError::OutputRejected { reason, .. } if reason == "impolite")
    );
}

#[tokio::test]
async fn tool_guardrails_check_arguments_and_results() {
    let agent = calculator_agent(one_call())
        .tool_argument_guardrail(|call| {
            if call.args["expression"] == "1+1" {
                Err("too easy".into())
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    assert_eq!(agent.ask("x").await.unwrap().text, "Error: too easy");

    let agent = calculator_agent(one_call())
        .tool_result_guardrail(|_, content| {
            if content == "2" {
                Err("the number 2 is classified".into())
            } else {
                Ok(())
            }
        })
        .build()
        .unwrap();
    let text = agent.ask("x").await.unwrap().text;
    assert_eq!(
        text,
        "Error: the result of `calculator` was withheld: the number 2 is classified"
    );
}

#[tokio::test]
async fn calls_refused_by_the_checks_are_reported_as_finished_errors() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_calls([
                ("calculater", json!({"expression": "1"})),
                ("calculator", json!({"expression": "2*3"})),
            ])
            .then_text("done"),
    );
    let agent = calculator_agent(model).build().unwrap();
    let ctx = RunContext::new();
    let events: Vec<String> = agent
        .run_stream("x", &ctx)
        .map(|e| kind(&e))
        .collect()
        .await;
    assert_eq!(
        events[..3],
        [
            "turn1",
            "end1",
            "done:Error: There is no tool named `calculater`. Available tools: calculator."
        ]
    );
    assert_eq!(events[3..5], ["start:calculator", "done:6"]);
}
