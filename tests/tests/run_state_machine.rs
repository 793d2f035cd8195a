//! The run's state machine on its own: inputs fed by hand (no driver, no model), each step's
//! action checked, and after every single input the state is saved and restored and must
//! give the same action as the original.

use std::sync::Arc;
use std::time::Duration;

use agent_core::prelude::*;
use agent_core::run::{BudgetKind, BudgetOverrun, Exceeded, OnBudgetExceeded, Veto};
use agent_core::{
    Action, AgentError, Approval, ChatResponse, Input, Message, RunState, StopReason, Tool,
    ToolCall, ToolChoice, ToolOutcome, ToolSet, check_history,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, schemars::JsonSchema)]
struct Pair {
    a: i64,
    b: i64,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Path {
    path: String,
}

/// `add` (read-only) and `delete` (needs approval). Neither is ever run here: the machine
/// only decides, and the outcomes are written by hand.
fn tools() -> ToolSet {
    ToolSet::new([
        Arc::new(
            tool_fn("add", "Adds.", |p: Pair, _| async move {
                Ok::<_, ToolError>(p.a + p.b)
            })
            .read_only(),
        ) as Arc<dyn Tool>,
        Arc::new(
            tool_fn("delete", "Deletes a file.", |p: Path, _| async move {
                Ok::<_, ToolError>(format!("deleted {}", p.path))
            })
            .with_meta(ToolMeta::side_effecting().with_approval()),
        ),
    ])
    .unwrap()
}

fn new_state() -> RunState {
    RunState::new(
        "run_table",
        vec![Message::system("Be exact.")],
        vec![Message::user("Go.")],
        Default::default(),
        RunLimits::default(),
    )
}

fn calls(calls: &[(&str, &str, serde_json::Value)]) -> Input {
    Input::ModelResponse(response(calls))
}

fn response(calls: &[(&str, &str, serde_json::Value)]) -> ChatResponse {
    ChatResponse::tool_calls(
        calls
            .iter()
            .map(|(id, name, args)| ToolCall::new(*id, *name, args))
            .collect(),
    )
}

fn text(t: &str) -> Input {
    Input::ModelResponse(ChatResponse::text(t))
}

fn ok(id: &str, content: &str) -> Input {
    Input::ToolFinished(ToolOutcome {
        call_id: id.into(),
        result: Ok(content.into()),
        duration: Duration::ZERO,
    })
}

fn overrun(on_exceeded: OnBudgetExceeded) -> BudgetOverrun {
    BudgetOverrun {
        exceeded: Exceeded {
            kind: BudgetKind::ToolCalls,
            limit: 1.0,
            used: 2.0,
        },
        on_exceeded,
    }
}

/// What a step must give.
enum Expect {
    CallModel,
    /// The wrap-up call: tools disabled.
    WrapUp,
    /// Run these call ids; the checks refused these.
    RunTools(&'static [&'static str], &'static [&'static str]),
    AwaitTools,
    /// Paused, with these calls waiting.
    Paused(&'static [&'static str]),
    Finished(&'static str, StopReason),
    Failed(fn(&AgentError) -> bool),
}

/// Feeds each input, checks each action, and after every input checks that a saved and
/// restored copy of the state gives the same action. Returns the last action.
fn run_table(mut state: RunState, steps: Vec<(Input, Expect)>) -> Action {
    let tools = tools();
    let mut last = None;
    for (n, (input, expect)) in steps.into_iter().enumerate() {
        let saved = serde_json::to_string(&state).unwrap();
        let mut restored: RunState = serde_json::from_str(&saved).unwrap();
        assert_eq!(restored, state, "step {n}: the restored state differs");
        let action = state.step(&tools, input.clone());
        let again = restored.step(&tools, input);
        assert_eq!(
            format!("{action:?}"),
            format!("{again:?}"),
            "step {n}: a restored state gave another action"
        );
        assert_eq!(restored, state, "step {n}: the states parted");
        check(n, &action, &expect);
        last = Some(action);
    }
    last.unwrap()
}

fn check(n: usize, action: &Action, expect: &Expect) {
    let ok = match (action, expect) {
        (Action::CallModel(r), Expect::CallModel) => r.tool_choice == ToolChoice::Auto,
        (Action::WrapUp(r), Expect::WrapUp) => r.tool_choice == ToolChoice::None,
        (Action::RunTools { run, refused }, Expect::RunTools(ids, refused_ids)) => {
            run.iter()
                .map(|i| i.call_id.as_str())
                .eq(ids.iter().copied())
                && refused
                    .iter()
                    .map(|r| r.call_id.as_str())
                    .eq(refused_ids.iter().copied())
        }
        (Action::AwaitTools, Expect::AwaitTools) => true,
        (Action::Paused { result, .. }, Expect::Paused(ids)) => {
            let pending = &result.interruption.as_ref().unwrap().pending;
            result.stop_reason == StopReason::AwaitingApproval
                && pending
                    .iter()
                    .map(|p| p.call_id.as_str())
                    .eq(ids.iter().copied())
        }
        (Action::Finished(r), Expect::Finished(text, reason)) => {
            r.text == *text && r.stop_reason == *reason
        }
        (Action::Failed(e), Expect::Failed(is)) => is(e),
        _ => false,
    };
    assert!(ok, "step {n}: unexpected action {action:#?}");
}

/// The tool results of the last request, as (id, content).
fn results_sent(action: &Action) -> Vec<(String, String)> {
    let (Action::CallModel(r) | Action::WrapUp(r)) = action else {
        panic!("not a model call: {action:?}")
    };
    r.last_tool_results()
        .map(|t| (t.call_id.clone(), t.content.clone()))
        .collect()
}

fn partial(e: &AgentError) -> &agent_core::PartialRun {
    let p = e.partial().expect("a partial run");
    check_history(&p.new_messages).expect("every call answered");
    p
}

#[test]
fn a_turn_with_one_call_refused_by_the_schema_runs_the_other_and_answers_both() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "add", json!({"a": 2, "b": 3})),
                    ("c2", "add", json!({"a": "two"})),
                ]),
                Expect::RunTools(&["c1"], &["c2"]),
            ),
            (ok("c1", "5"), Expect::CallModel),
        ],
    );
    let sent = results_sent(&last);
    assert_eq!(sent[0], ("c1".into(), "5".into()));
    assert_eq!(sent[1].0, "c2");
    assert!(
        sent[1].1.contains("do not match its parameters"),
        "{sent:?}"
    );
}

#[test]
fn every_call_refused_is_reported_then_the_next_turn_follows() {
    run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[("c1", "ad", json!({}))]),
                Expect::RunTools(&[], &["c1"]),
            ),
            (Input::Resume, Expect::CallModel),
            (
                text("Sorry."),
                Expect::Finished("Sorry.", StopReason::Completed),
            ),
        ],
    );
}

#[test]
fn results_arriving_out_of_order_reach_the_model_in_call_order() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "add", json!({"a": 1, "b": 1})),
                    ("c2", "add", json!({"a": 2, "b": 2})),
                    ("c3", "add", json!({"a": 3, "b": 3})),
                ]),
                Expect::RunTools(&["c1", "c2", "c3"], &[]),
            ),
            (ok("c3", "6"), Expect::AwaitTools),
            // An outcome reported twice, or for no call of this turn, changes nothing.
            (ok("c3", "60"), Expect::AwaitTools),
            (ok("nope", "0"), Expect::AwaitTools),
            (ok("c1", "2"), Expect::AwaitTools),
            (ok("c2", "4"), Expect::CallModel),
        ],
    );
    let sent: Vec<(String, String)> = results_sent(&last);
    let expected: Vec<(String, String)> = [("c1", "2"), ("c2", "4"), ("c3", "6")]
        .map(|(a, b)| (a.into(), b.into()))
        .into();
    assert_eq!(sent, expected);
}

#[test]
fn a_state_saved_mid_turn_runs_only_the_calls_still_pending() {
    let mut state = new_state();
    run_table_on(
        &mut state,
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "add", json!({"a": 1, "b": 1})),
                    ("c2", "add", json!({"a": 2, "b": 2})),
                ]),
                Expect::RunTools(&["c1", "c2"], &[]),
            ),
            (ok("c2", "4"), Expect::AwaitTools),
        ],
    );
    let mut restored: RunState =
        serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
    run_table(
        restored.clone(),
        vec![(Input::Resume, Expect::RunTools(&["c1"], &[]))],
    );
    let Action::CallModel(request) = restored.step(&tools(), ok("c1", "2")) else {
        panic!()
    };
    assert_eq!(request.last_tool_results().count(), 2);
}

/// [`run_table`] on a state the caller keeps.
fn run_table_on(state: &mut RunState, steps: Vec<(Input, Expect)>) {
    let tools = tools();
    for (n, (input, expect)) in steps.into_iter().enumerate() {
        let action = state.step(&tools, input);
        check(n, &action, &expect);
    }
}

#[test]
fn cancellation_while_tools_run_answers_every_call() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "add", json!({"a": 1, "b": 1})),
                    ("c2", "add", json!({"a": 2, "b": 2})),
                ]),
                Expect::RunTools(&["c1", "c2"], &[]),
            ),
            (ok("c1", "2"), Expect::AwaitTools),
            (
                Input::Cancelled,
                Expect::Failed(|e| matches!(e, AgentError::Cancelled { .. })),
            ),
        ],
    );
    let Action::Failed(error) = last else {
        unreachable!()
    };
    let p = partial(&error);
    let results: Vec<String> = p.new_messages[2..].iter().map(Message::text).collect();
    assert_eq!(results[0], "2", "the finished call keeps its result");
    assert!(results[1].contains("cancelled"), "{results:?}");
}

#[test]
fn a_budget_overrun_set_to_fail_ends_the_run_before_the_model_call() {
    run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                Input::OverBudget(overrun(OnBudgetExceeded::Fail)),
                Expect::Failed(
                    |e| matches!(e, AgentError::BudgetExceeded { kind: BudgetKind::ToolCalls, partial, .. } if partial.turns == 0),
                ),
            ),
        ],
    );
}

#[test]
fn a_budget_overrun_set_to_fail_before_tools_answers_every_call() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[("c1", "add", json!({"a": 1, "b": 1}))]),
                Expect::RunTools(&["c1"], &[]),
            ),
            (
                Input::OverBudget(overrun(OnBudgetExceeded::Fail)),
                Expect::Failed(|e| matches!(e, AgentError::BudgetExceeded { .. })),
            ),
        ],
    );
    let Action::Failed(error) = last else {
        unreachable!()
    };
    let p = partial(&error);
    assert!(p.new_messages.last().unwrap().text().contains("budget"));
}

#[test]
fn a_budget_overrun_set_to_wrap_up_asks_for_a_last_answer_without_tools() {
    let mut steps = vec![(Input::Resume, Expect::CallModel)];
    // The model's turn took the budget past its limit while asking for a tool: its call is
    // answered "not run", and the wrap-up call follows (never refused by the budget itself).
    steps.push((
        Input::ModelResponseVetoed(
            response(&[("c1", "add", json!({"a": 1, "b": 1}))]),
            Veto::OverBudget(overrun(OnBudgetExceeded::WrapUp)),
        ),
        Expect::WrapUp,
    ));
    steps.push((
        Input::OverBudget(overrun(OnBudgetExceeded::Fail)),
        Expect::WrapUp,
    ));
    steps.push((
        text("Best so far: 2"),
        Expect::Finished("Best so far: 2", StopReason::BudgetExhausted),
    ));
    let Action::Finished(result) = run_table(new_state(), steps) else {
        unreachable!()
    };
    check_history(&result.new_messages).unwrap();
    assert!(result.new_messages[2].text().contains("not run"));
}

#[test]
fn a_final_answer_over_budget_is_kept() {
    run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                Input::ModelResponseVetoed(
                    ChatResponse::text("Done."),
                    Veto::OverBudget(overrun(OnBudgetExceeded::Fail)),
                ),
                Expect::Finished("Done.", StopReason::Completed),
            ),
        ],
    );
}

#[test]
fn a_hook_stop_while_tools_run_answers_every_call() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "add", json!({"a": 1, "b": 1})),
                    ("c2", "add", json!({"a": 2, "b": 2})),
                ]),
                Expect::RunTools(&["c1", "c2"], &[]),
            ),
            (
                Input::Stopped("enough".into()),
                Expect::Failed(
                    |e| matches!(e, AgentError::Stopped { reason, .. } if reason == "enough"),
                ),
            ),
        ],
    );
    let Action::Failed(error) = last else {
        unreachable!()
    };
    assert_eq!(partial(&error).new_messages.len(), 4);
}

#[test]
fn a_hook_stop_after_a_final_answer_keeps_the_answer() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                Input::ModelResponseVetoed(
                    ChatResponse::text("secret"),
                    Veto::Stopped("leak".into()),
                ),
                Expect::Failed(|e| matches!(e, AgentError::Stopped { .. })),
            ),
        ],
    );
    let Action::Failed(error) = last else {
        unreachable!()
    };
    assert_eq!(partial(&error).new_messages[1].text(), "secret");
}

#[test]
fn an_approval_pause_then_approve_reject_and_edit() {
    let last = run_table(
        new_state(),
        vec![
            (Input::Resume, Expect::CallModel),
            (
                calls(&[
                    ("c1", "delete", json!({"path": "a.txt"})),
                    ("c2", "delete", json!({"path": "b.txt"})),
                    ("c3", "delete", json!({"path": "/etc/passwd"})),
                    ("c4", "add", json!({"a": 1, "b": 1})),
                ]),
                Expect::Paused(&["c1", "c2", "c3"]),
            ),
            // A decision on one call only: the others still wait.
            (
                Input::Approvals(vec![("c1".into(), Approval::Approve)]),
                Expect::Paused(&["c2", "c3"]),
            ),
            (
                Input::Approvals(vec![
                    (
                        "c2".into(),
                        Approval::Reject {
                            message: "keep it".into(),
                        },
                    ),
                    (
                        "c3".into(),
                        Approval::Edit {
                            args: json!({"path": "c.txt"}),
                        },
                    ),
                ]),
                Expect::RunTools(&["c1", "c3", "c4"], &[]),
            ),
            (ok("c4", "2"), Expect::AwaitTools),
            (ok("c3", "deleted c.txt"), Expect::AwaitTools),
            (ok("c1", "deleted a.txt"), Expect::CallModel),
        ],
    );
    let sent = results_sent(&last);
    let contents: Vec<&str> = sent.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(contents[0], "deleted a.txt");
    assert_eq!(contents[1], "Error: the user rejected this call: keep it");
    assert_eq!(contents[2], "deleted c.txt");
    assert_eq!(contents[3], "2");
}

#[test]
fn a_result_longer_than_the_cap_is_cut_with_a_note() {
    let mut state = RunState::new(
        "r",
        vec![],
        vec![Message::user("Go.")],
        Default::default(),
        RunLimits {
            max_tool_result_bytes: 1000,
            ..Default::default()
        },
    );
    let tools = tools();
    state.step(&tools, Input::Resume);
    state.step(&tools, calls(&[("c1", "add", json!({"a": 1, "b": 1}))]));
    // 3-byte characters, so the cap falls inside one.
    let huge = "€".repeat(1_000_000);
    let action = state.step(&tools, ok("c1", &huge));
    let sent = results_sent(&action);
    let content = &sent[0].1;
    assert!(content.len() < 1200, "{}", content.len());
    assert!(content.starts_with(&"€".repeat(333)));
    assert!(
        content.contains(&format!("{} more bytes", 3_000_000 - 999)),
        "{}",
        &content[990..]
    );
}

#[test]
fn the_default_cap_keeps_results_to_a_few_hundred_kilobytes() {
    assert_eq!(RunLimits::default().max_tool_result_bytes, 256 * 1024);
}

#[test]
fn a_turn_with_tens_of_thousands_of_calls_is_refused_early() {
    let many: Vec<ToolCall> = (0..50_000)
        .map(|i| ToolCall::new("", "add", &json!({"a": i, "b": 1})))
        .collect();
    let mut state = new_state();
    let tools = tools();
    state.step(&tools, Input::Resume);
    let started = std::time::Instant::now();
    let action = state.step(&tools, Input::ModelResponse(ChatResponse::tool_calls(many)));
    let Action::Failed(error) = action else {
        panic!("{action:?}")
    };
    assert!(
        matches!(
            &error,
            AgentError::TooManyToolCalls {
                calls: 50_000,
                limit: 128,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("50000 tool calls"), "{error}");
    // The refused turn is not in the history, which stays valid.
    assert_eq!(partial(&error).new_messages.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_turn_at_a_raised_cap_is_handled_in_linear_time() {
    // 50,000 calls with empty ids (each must be given a unique one) and answered in
    // reverse order: quadratic bookkeeping would take minutes here; linear takes well
    // under a second even in a debug build.
    let n = 50_000;
    let mut state = RunState::new(
        "r",
        vec![],
        vec![Message::user("Go.")],
        Default::default(),
        RunLimits {
            max_tool_calls_per_turn: n,
            max_identical_calls: 0,
            max_consecutive_tool_failures: u32::MAX,
            ..Default::default()
        },
    );
    let tools = tools();
    state.step(&tools, Input::Resume);
    let many: Vec<ToolCall> = (0..n)
        .map(|i| ToolCall::new("", "add", &json!({"a": i, "b": 1})))
        .collect();
    let started = std::time::Instant::now();
    let Action::RunTools { run, .. } =
        state.step(&tools, Input::ModelResponse(ChatResponse::tool_calls(many)))
    else {
        panic!()
    };
    assert_eq!(run.len(), n as usize);
    let mut last = None;
    for invocation in run.iter().rev() {
        last = Some(state.step(&tools, ok(&invocation.call_id, "x")));
    }
    assert!(matches!(last, Some(Action::CallModel(_))));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
