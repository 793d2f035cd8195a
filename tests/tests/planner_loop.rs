//! The planner loop: scheduling of tool calls, limits, the history invariant, and pausing a
//! run as serialised state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agent_core::Tool;
use agent_core::prelude::*;
use agent_core::testing::ScriptedModel;
use agent_core::{
    Action, AgentError, ChatResponse, InMemoryMemory, Input, Memory, Message, OnMaxTurns, RunEvent,
    StopReason, ToolCall, ToolChoice, ToolSet, run::ToolRunner,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize, schemars::JsonSchema)]
struct Sleep {
    ms: u64,
    label: String,
}

/// A tool that sleeps, tracks how many of its calls overlap, and returns its label.
fn sleeper(
    name: &str,
    meta: ToolMeta,
    in_flight: Arc<AtomicUsize>,
    max_seen: Arc<AtomicUsize>,
) -> Arc<dyn Tool> {
    Arc::new(
        tool_fn(
            name,
            "Sleeps, then echoes its label.",
            move |a: Sleep, _| {
                let in_flight = in_flight.clone();
                let max_seen = max_seen.clone();
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_seen.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(a.ms)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok(a.label)
                }
            },
        )
        .with_meta(meta),
    )
}

struct Counters {
    in_flight: Arc<AtomicUsize>,
    max_seen: Arc<AtomicUsize>,
}

fn counters() -> Counters {
    Counters {
        in_flight: Arc::new(AtomicUsize::new(0)),
        max_seen: Arc::new(AtomicUsize::new(0)),
    }
}

fn two_calls(tool: &str) -> ScriptedModel {
    ScriptedModel::new()
        .then_tool_calls([
            (tool, json!({"ms": 200, "label": "first"})),
            (tool, json!({"ms": 200, "label": "second"})),
        ])
        .then_text("done")
}

#[tokio::test(start_paused = true)]
async fn two_parallel_safe_tools_finish_together_in_under_300ms() {
    let c = counters();
    let agent = LlmAgent::builder(Arc::new(two_calls("read")))
        .tools([sleeper(
            "read",
            ToolMeta::read_only(),
            c.in_flight,
            c.max_seen.clone(),
        )])
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    agent.ask("go").await.unwrap();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(300), "{elapsed:?}");
    assert_eq!(c.max_seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn two_side_effecting_tools_run_one_after_the_other() {
    let c = counters();
    let agent = LlmAgent::builder(Arc::new(two_calls("write")))
        .tools([sleeper(
            "write",
            ToolMeta::side_effecting(),
            c.in_flight,
            c.max_seen.clone(),
        )])
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    agent.ask("go").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(c.max_seen.load(Ordering::SeqCst), 1);
}

/// The same property on the real clock, with a generous bound: sequential runs would take
/// at least 400 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_safe_tools_overlap_on_the_real_clock() {
    let c = counters();
    let agent = LlmAgent::builder(Arc::new(two_calls("read")))
        .tools([sleeper(
            "read",
            ToolMeta::read_only(),
            c.in_flight,
            c.max_seen.clone(),
        )])
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    agent.ask("go").await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.max_seen.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn results_come_back_in_call_order() {
    let c = counters();
    let model = ScriptedModel::new()
        .then_tool_calls([
            ("read", json!({"ms": 300, "label": "slow"})),
            ("read", json!({"ms": 10, "label": "fast"})),
            ("write", json!({"ms": 50, "label": "write"})),
            ("read", json!({"ms": 100, "label": "after-write"})),
            ("read", json!({"ms": 1, "label": "last"})),
        ])
        .then_text("done");
    let agent = LlmAgent::builder(Arc::new(model))
        .tools([
            sleeper(
                "read",
                ToolMeta::read_only(),
                c.in_flight.clone(),
                c.max_seen.clone(),
            ),
            sleeper("write", ToolMeta::side_effecting(), c.in_flight, c.max_seen),
        ])
        .build()
        .unwrap();
    let result = agent.ask("go").await.unwrap();
    let labels: Vec<String> = result
        .new_messages
        .iter()
        .filter_map(Message::as_tool_result)
        .map(|r| r.content.clone())
        .collect();
    assert_eq!(labels, ["slow", "fast", "write", "after-write", "last"]);
    let call_ids: Vec<&str> = result.new_messages[1]
        .as_assistant()
        .unwrap()
        .tool_calls
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    let result_ids: Vec<&str> = result.new_messages[2..7]
        .iter()
        .map(|m| m.as_tool_result().unwrap().call_id.as_str())
        .collect();
    assert_eq!(call_ids, result_ids);
}

#[tokio::test(start_paused = true)]
async fn a_side_effecting_call_waits_for_the_parallel_calls_before_it() {
    // read(300) ∥ read(10), then write: the write must start after both reads.
    let c = counters();
    let tools = ToolSet::new([
        sleeper(
            "read",
            ToolMeta::read_only(),
            c.in_flight.clone(),
            c.max_seen.clone(),
        ),
        sleeper(
            "write",
            ToolMeta::side_effecting(),
            c.in_flight,
            c.max_seen.clone(),
        ),
    ])
    .unwrap();
    let invocations = vec![
        agent_core::ToolInvocation {
            call_id: "a".into(),
            name: "read".into(),
            args: json!({"ms": 300, "label": "a"}),
        },
        agent_core::ToolInvocation {
            call_id: "b".into(),
            name: "read".into(),
            args: json!({"ms": 10, "label": "b"}),
        },
        agent_core::ToolInvocation {
            call_id: "c".into(),
            name: "write".into(),
            args: json!({"ms": 100, "label": "c"}),
        },
    ];
    let started = tokio::time::Instant::now();
    let runner = ToolRunner {
        tools: &tools,
        limits: &RunLimits::default(),
        run_id: &Arc::from("run"),
        agent: &Arc::from("agent"),
        cancel: &agent_core::CancellationToken::new(),
        budget: None,
        turn: 1,
        journal: None,
    };
    let outcomes = runner.run(invocations).await;
    assert_eq!(started.elapsed(), Duration::from_millis(400));
    assert_eq!(c.max_seen.load(Ordering::SeqCst), 2);
    let ids: Vec<&str> = outcomes.iter().map(|o| o.call_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

fn looping_model(turns: usize) -> ScriptedModel {
    let mut model = ScriptedModel::new();
    for i in 0..turns {
        model = model.then_tool_call("calculator", json!({"expression": format!("{i}+1")}));
    }
    model
}

#[tokio::test]
async fn at_max_turns_a_last_call_without_tools_gives_the_best_answer() {
    let model = Arc::new(looping_model(2).then_reply(|req| {
        assert_eq!(req.tool_choice, ToolChoice::None);
        let last = req.messages.last().unwrap();
        assert!(last.text().contains("limit"), "{}", last.text());
        Ok(ChatResponse::text("best so far: 2"))
    }));
    let agent = LlmAgent::builder(model.clone())
        .tool(agent_tools::Calculator::new())
        .max_turns(2)
        .build()
        .unwrap();
    let result = agent.ask("loop").await.unwrap();
    model.assert_complete();
    assert_eq!(result.text, "best so far: 2");
    assert_eq!(result.stop_reason, StopReason::MaxTurns);
    assert_eq!(result.turns, 3);
    // The wrap-up prompt went to the model but is not part of the history.
    assert!(
        !result
            .new_messages
            .iter()
            .any(|m| m.text().contains("limit of tool-using turns"))
    );
    agent_core::check_history(&result.new_messages).unwrap();
}

#[tokio::test]
async fn tool_calls_in_the_wrap_up_answer_are_dropped() {
    let model = Arc::new(looping_model(2));
    let agent = LlmAgent::builder(model.clone())
        .tool(agent_tools::Calculator::new())
        .max_turns(1)
        .build()
        .unwrap();
    let result = agent.ask("loop").await.unwrap();
    model.assert_complete();
    assert_eq!(result.stop_reason, StopReason::MaxTurns);
    let last = result.new_messages.last().unwrap().as_assistant().unwrap();
    assert!(last.tool_calls.is_empty());
    agent_core::check_history(&result.new_messages).unwrap();
}

#[tokio::test]
async fn at_max_turns_the_run_can_fail_with_the_history_instead() {
    let model = Arc::new(looping_model(2));
    let agent = LlmAgent::builder(model.clone())
        .tool(agent_tools::Calculator::new())
        .limits(RunLimits {
            max_turns: 2,
            on_max_turns: OnMaxTurns::Fail,
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = agent.ask("loop").await.unwrap_err();
    let AgentError::MaxTurns {
        max_turns: 2,
        partial,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(partial.turns, 2);
    assert_eq!(partial.new_messages.len(), 5);
    model.assert_complete();
}

#[tokio::test]
async fn a_history_with_an_unanswered_call_is_never_sent() {
    let memory = Arc::new(InMemoryMemory::new());
    memory
        .append(
            "s",
            &[
                Message::user("earlier"),
                Message::Assistant(agent_core::AssistantMessage::with_tool_calls(
                    "",
                    vec![ToolCall::raw("c1", "calculator", "{}")],
                )),
            ],
        )
        .await
        .unwrap();
    let model = Arc::new(ScriptedModel::new().then_text("never"));
    let agent = LlmAgent::builder(model.clone())
        .memory(memory)
        .build()
        .unwrap();
    let err = agent
        .run("now", &RunContext::new().with_session("s"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::History(agent_core::HistoryError::UnansweredCall { .. })
        ),
        "{err:?}"
    );
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn the_scripted_model_records_every_request() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("calculator", json!({"expression": "6*7"}))
            .then_text("42"),
    );
    let agent = LlmAgent::builder(model.clone())
        .instructions("Be exact.")
        .tool(agent_tools::Calculator::new())
        .temperature(0.0)
        .build()
        .unwrap();
    agent.ask("six times seven?").await.unwrap();
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let first = &requests[0];
    assert_eq!(
        *first.messages,
        vec![
            Message::system("Be exact."),
            Message::user("six times seven?")
        ]
    );
    assert_eq!(first.tools.len(), 1);
    assert_eq!(first.tools[0].name, "calculator");
    assert_eq!(first.tools[0].parameters["required"], json!(["expression"]));
    assert_eq!(first.temperature, Some(0.0));
    let second = &requests[1];
    assert_eq!(second.messages.len(), 4);
    assert_eq!(second.last_tool_results().next().unwrap().content, "42");
}

#[tokio::test]
async fn memory_carries_a_session_across_runs() {
    let memory = Arc::new(InMemoryMemory::new());
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("Hi Ada.")
            .then_text("Your name is Ada."),
    );
    let agent = LlmAgent::builder(model.clone())
        .memory(memory.clone())
        .build()
        .unwrap();
    let ctx = RunContext::new().with_session("ada");
    agent.run("I am Ada.", &ctx).await.unwrap();
    agent.run("Who am I?", &ctx).await.unwrap();
    let second = &model.requests()[1];
    assert_eq!(second.messages.len(), 3);
    assert_eq!(second.messages[0].text(), "I am Ada.");
    assert_eq!(memory.load("ada").await.unwrap().len(), 4);
}

#[tokio::test]
async fn ask_on_an_agent_with_memory_continues_the_default_session() {
    let memory = Arc::new(InMemoryMemory::new());
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("Hi Ada.")
            .then_text("Your name is Ada."),
    );
    let agent = LlmAgent::builder(model.clone())
        .memory(memory.clone())
        .build()
        .unwrap();
    agent.ask("I am Ada.").await.unwrap();
    agent.ask("Who am I?").await.unwrap();
    let second = &model.requests()[1];
    assert_eq!(
        second.messages[0].text(),
        "I am Ada.",
        "the memory was used"
    );
    assert_eq!(
        memory
            .load(agent_core::DEFAULT_SESSION)
            .await
            .unwrap()
            .len(),
        4
    );
}

#[tokio::test]
async fn builder_calls_do_not_undo_each_other_whatever_their_order() {
    let settings = agent_core::ModelSettings {
        max_output_tokens: Some(99),
        ..Default::default()
    };
    let limits = RunLimits {
        max_parallel_tools: 2,
        ..RunLimits::default()
    };
    let model = || Arc::new(ScriptedModel::new());
    let before = LlmAgent::builder(model())
        .streaming(true)
        .temperature(0.25)
        .max_turns(3)
        .settings(settings.clone())
        .limits(limits.clone())
        .build()
        .unwrap();
    let after = LlmAgent::builder(model())
        .settings(settings)
        .limits(limits)
        .max_turns(3)
        .temperature(0.25)
        .streaming(true)
        .build()
        .unwrap();
    for agent in [&before, &after] {
        assert!(agent.settings().stream);
        assert_eq!(agent.settings().temperature, Some(0.25));
        assert_eq!(agent.settings().max_output_tokens, Some(99));
        assert_eq!(agent.limits().max_turns, 3);
        assert_eq!(agent.limits().max_parallel_tools, 2);
    }
}

#[tokio::test]
async fn an_agent_without_a_description_cannot_become_a_tool() {
    let inner = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .name("researcher")
        .build()
        .unwrap();
    let error = agent_core::AgentTool::new(Arc::new(inner)).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`researcher` has no description"),
        "{error}"
    );
}

#[tokio::test]
async fn a_sliding_window_limits_what_is_sent() {
    let memory = Arc::new(InMemoryMemory::new());
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("1")
            .then_text("2")
            .then_text("3"),
    );
    let agent = LlmAgent::builder(model.clone())
        .memory(memory)
        .context_policy(agent_core::SlidingWindow::new(2))
        .build()
        .unwrap();
    let ctx = RunContext::new().with_session("s");
    for q in ["a", "b", "c"] {
        agent.run(q, &ctx).await.unwrap();
    }
    let third = &model.requests()[2];
    let texts: Vec<String> = third.messages.iter().map(Message::text).collect();
    assert_eq!(texts, ["b", "2", "c"]);
}

fn resume_script() -> ScriptedModel {
    ScriptedModel::new()
        .then_tool_calls([
            ("calculator", json!({"expression": "2+3"})),
            ("calculator", json!({"expression": "4*5"})),
        ])
        .then_tool_call("calculator", json!({"expression": "5+20"}))
        .then_reply(|req| {
            let r: Vec<String> = req.last_tool_results().map(|r| r.content.clone()).collect();
            Ok(ChatResponse::text(format!("total {}", r.join(","))))
        })
}

fn calculator_set() -> ToolSet {
    ToolSet::new([Arc::new(agent_tools::Calculator::new()) as Arc<dyn Tool>]).unwrap()
}

#[tokio::test]
async fn a_run_serialised_mid_way_resumes_to_the_same_result() {
    let tools = calculator_set();
    let new_state = || {
        agent_core::RunState::new(
            "run_fixed",
            vec![Message::system("sys")],
            vec![Message::user("compute")],
            Default::default(),
            RunLimits::default(),
        )
    };

    // Uninterrupted.
    let model = resume_script();
    let mut state = new_state();
    let expected = agent_core::drive(&mut state, &model, &tools, "a", &Default::default())
        .await
        .unwrap();

    // Paused after the first model answer, with tool calls pending; saved as JSON.
    let model = resume_script();
    let mut state = new_state();
    let Action::CallModel(request) = state.step(&tools, Input::Resume) else {
        panic!()
    };
    let mut response = model.chat(&request).await.unwrap();
    // As the driver does: the answer names its model.
    response.model = Some(model.model().to_owned());
    let Action::RunTools { run: pending, .. } = state.step(&tools, Input::ModelResponse(response))
    else {
        panic!()
    };
    assert_eq!(pending.len(), 2);
    let saved = serde_json::to_string(&state).unwrap();
    assert!(saved.contains("\"version\":2"), "{saved}");
    drop(state);

    let mut restored: agent_core::RunState = serde_json::from_str(&saved).unwrap();
    let Action::RunTools { run: again, .. } = restored.step(&tools, Input::Resume) else {
        panic!()
    };
    assert_eq!(again, pending);
    let resumed = agent_core::drive(&mut restored, &model, &tools, "a", &Default::default())
        .await
        .unwrap();
    model.assert_complete();
    assert_eq!(resumed, expected);
    assert_eq!(resumed.text, "total 25");
}

#[tokio::test]
async fn a_state_of_another_format_version_is_refused() {
    let state = agent_core::RunState::new(
        "r",
        vec![],
        vec![Message::user("x")],
        Default::default(),
        RunLimits::default(),
    );
    let mut json = serde_json::to_value(&state).unwrap();
    json["version"] = json!(99);
    let mut state: agent_core::RunState = serde_json::from_value(json).unwrap();
    let action = state.step(&ToolSet::empty(), Input::Resume);
    assert!(matches!(action, Action::Failed(AgentError::InvalidState(m)) if m.contains("99")));
}

#[tokio::test]
async fn cancelling_during_a_slow_tool_returns_promptly_with_every_call_answered() {
    let slow = tool_fn(
        "slow",
        "Takes ten seconds.",
        |_: Sleep, ctx: ToolContext| async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(10)) => Ok("finished"),
                _ = ctx.cancel.cancelled() => Err(ToolError::failed("stopped")),
            }
        },
    )
    .read_only();
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_calls([
                ("slow", json!({"ms": 0, "label": "a"})),
                ("calculator", json!({"expression": "1+1"})),
            ])
            .then_text("never"),
    );
    let agent = LlmAgent::builder(model)
        .tool(slow)
        .tool(agent_tools::Calculator::new())
        .build()
        .unwrap();
    let ctx = RunContext::new();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let err = agent.run("go", &ctx).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let AgentError::Cancelled { partial } = &err else {
        panic!("{err:?}")
    };
    agent_core::check_history(&partial.new_messages).unwrap();
    let results: Vec<_> = partial
        .new_messages
        .iter()
        .filter_map(Message::as_tool_result)
        .collect();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_error);
    assert_eq!(results[1].content, "2");
}

#[tokio::test]
async fn duplicate_tool_names_are_rejected_when_the_agent_is_built() {
    let err = LlmAgent::builder(Arc::new(ScriptedModel::new()))
        .tool(agent_tools::Calculator::new())
        .tool(agent_tools::Calculator::new())
        .build()
        .unwrap_err();
    assert_eq!(
        err,
        agent_core::ToolSetError::DuplicateName("calculator".into())
    );
}

#[tokio::test]
async fn an_agent_can_be_another_agents_tool() {
    let inner = LlmAgent::builder(Arc::new(ScriptedModel::new().then_text("inner answer")))
        .name("researcher")
        .description("Finds things out.")
        .build()
        .unwrap();
    let outer_model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("researcher", json!({"input": "find it"}))
            .then_reply(|req| {
                Ok(ChatResponse::text(
                    req.last_tool_results().next().unwrap().content.clone(),
                ))
            }),
    );
    let outer = LlmAgent::builder(outer_model)
        .tool(agent_core::AgentTool::new(Arc::new(inner)).unwrap())
        .build()
        .unwrap();
    assert_eq!(outer.ask("delegate").await.unwrap().text, "inner answer");
}

#[tokio::test]
async fn usage_is_kept_per_turn_and_in_total() {
    let model = ScriptedModel::new()
        .then_response(ChatResponse {
            usage: agent_core::Usage {
                input_tokens: 100,
                output_tokens: 10,
                cached_input_tokens: 40,
                reasoning_tokens: 0,
                ..Default::default()
            },
            ..ChatResponse::tool_calls(vec![ToolCall::new(
                "c",
                "calculator",
                &json!({"expression": "1"}),
            )])
        })
        .then_response(ChatResponse {
            usage: agent_core::Usage {
                input_tokens: 120,
                output_tokens: 5,
                cached_input_tokens: 100,
                reasoning_tokens: 2,
                ..Default::default()
            },
            ..ChatResponse::text("1")
        });
    let agent = LlmAgent::builder(Arc::new(model))
        .tool(agent_tools::Calculator::new())
        .build()
        .unwrap();
    let result = agent.ask("one").await.unwrap();
    assert_eq!(result.turn_usage.len(), 2);
    assert_eq!(result.usage.input_tokens, 220);
    assert_eq!(result.usage.cached_input_tokens, 140);
    assert_eq!(result.usage.total_tokens(), 235);
}

/// A tool source whose tools a test can change.
struct Changing {
    version: AtomicUsize,
    tools: std::sync::Mutex<Vec<Arc<dyn Tool>>>,
}

impl agent_core::ToolSource for Changing {
    fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst) as u64
    }
    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools.lock().unwrap().clone()
    }
}

fn answer_tool(name: &str, answer: &'static str) -> Arc<dyn Tool> {
    #[derive(Deserialize, schemars::JsonSchema)]
    struct NoArgs {}
    Arc::new(tool_fn(name, "Answers.", move |_: NoArgs, _| async move {
        Ok(answer)
    }))
}

#[tokio::test]
async fn tool_sources_are_read_when_each_run_starts_and_bad_changes_are_not_taken() {
    let source = Arc::new(Changing {
        version: AtomicUsize::new(1),
        tools: std::sync::Mutex::new(vec![answer_tool("a", "A")]),
    });
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("a", json!({}))
            .then_text("one")
            .then_tool_call("b", json!({}))
            .then_text("two"),
    );
    let agent = LlmAgent::builder(model.clone())
        .tools([answer_tool("fixed", "F")])
        .tool_source(source.clone())
        .build()
        .unwrap();
    assert_eq!(agent.tools().names().collect::<Vec<_>>(), ["fixed", "a"]);
    agent.ask("first").await.unwrap();

    *source.tools.lock().unwrap() = vec![answer_tool("b", "B")];
    source.version.store(2, Ordering::SeqCst);
    let second = agent.ask("second").await.unwrap();
    assert_eq!(agent.tools().names().collect::<Vec<_>>(), ["fixed", "b"]);
    let result = second
        .new_messages
        .iter()
        .find_map(|m| m.as_tool_result())
        .unwrap();
    assert_eq!(
        (
            result.name.as_str(),
            result.content.as_str(),
            result.is_error
        ),
        ("b", "B", false)
    );

    // A source's tool that takes a fixed tool's name is left out: the agent's own tool
    // stays (a server cannot shadow it, or stop the agent).
    *source.tools.lock().unwrap() = vec![answer_tool("fixed", "clash"), answer_tool("c", "C")];
    source.version.store(3, Ordering::SeqCst);
    assert_eq!(agent.tools().names().collect::<Vec<_>>(), ["fixed", "c"]);
    let fixed = agent.tools().get("fixed").unwrap().clone();
    let out = fixed
        .call(json!({}), &agent_core::ToolContext::detached())
        .await
        .unwrap()
        .into_content();
    assert_eq!(out, "F");
}

#[tokio::test]
async fn a_version_1_state_resumes_to_completion() {
    // Saved by the first format: paused with a repeated call pending, its fingerprint made
    // by the standard library's hasher. The repeat count survives the migration, so the
    // second identical call is flagged (the fixture's limit is 2).
    let saved = include_str!("fixtures/run_state_v1.json");
    let mut state: agent_core::RunState = serde_json::from_str(saved).unwrap();
    let resaved = serde_json::to_value(&state).unwrap();
    assert_eq!(resaved["version"], json!(agent_core::run::STATE_VERSION));
    let model = ScriptedModel::new().then_reply(|req| {
        let last = req.last_tool_results().next().unwrap();
        Ok(ChatResponse::text(format!("It is {}.", &last.content[..1])))
    });
    let result = agent_core::drive(
        &mut state,
        &model,
        &calculator_set(),
        "a",
        &Default::default(),
    )
    .await
    .unwrap();
    model.assert_complete();
    assert_eq!(result.text, "It is 5.");
    assert_eq!(result.turns, 3);
    agent_core::check_history(&result.new_messages).unwrap();
    let repeated = result.new_messages[4].text();
    assert!(repeated.starts_with('5'), "{repeated}");
    assert!(repeated.contains("called 2 times in a row"), "{repeated}");
}

#[test]
fn a_tool_that_blocks_its_thread_times_out_and_its_sibling_finishes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(blocking_tool_run());
    // The blocked thread is still asleep: do not wait for it.
    runtime.shutdown_background();
}

async fn blocking_tool_run() {
    // A synchronous sleep: the tool never yields, so only a call on a task of its own can
    // be timed out while it blocks.
    let blocking = tool_fn("blocking", "Blocks its thread.", |_: Sleep, _| async move {
        std::thread::sleep(Duration::from_secs(10));
        Ok::<_, ToolError>("woke up")
    })
    .with_meta(ToolMeta::read_only().with_timeout(Duration::from_millis(200)));
    let c = counters();
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_calls([
                ("blocking", json!({"ms": 0, "label": "a"})),
                ("read", json!({"ms": 50, "label": "sibling"})),
            ])
            .then_reply(|req| {
                let results: Vec<String> =
                    req.last_tool_results().map(|r| r.content.clone()).collect();
                Ok(ChatResponse::text(results.join(" | ")))
            }),
    );
    let agent = LlmAgent::builder(model.clone())
        .tool(blocking)
        .tools([sleeper(
            "read",
            ToolMeta::read_only(),
            c.in_flight,
            c.max_seen,
        )])
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = futures::StreamExt::collect(agent.run_stream("go", &ctx)).await;
    // Far under the 10 s the tool blocks for (a generous bound, not a race).
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    // The promise: the timeout result comes within the timeout (200 ms) and a second.
    let blocked_for = events
        .iter()
        .find_map(|e| match e {
            RunEvent::ToolCallFinished { name, duration, .. } if name == "blocking" => {
                Some(*duration)
            }
            _ => None,
        })
        .unwrap();
    assert!(blocked_for < Duration::from_millis(1200), "{blocked_for:?}");
    let Some(RunEvent::Finished(result)) = events.last() else {
        panic!("{events:?}")
    };
    let (timeout, sibling) = result.text.split_once(" | ").unwrap();
    assert!(timeout.contains("did not finish within 200ms"), "{timeout}");
    assert_eq!(sibling, "sibling");
    model.assert_complete();
}

#[derive(Debug)]
struct PastTheEnd;

impl agent_core::ContextPolicy for PastTheEnd {
    fn start(&self, history: &[Message]) -> usize {
        history.len() + 5
    }
}

#[tokio::test]
async fn a_context_policy_starting_past_the_end_keeps_no_history_instead_of_panicking() {
    let memory = Arc::new(InMemoryMemory::new());
    memory
        .append(
            "s",
            &[Message::user("old"), Message::assistant("older answer")],
        )
        .await
        .unwrap();
    let model = Arc::new(ScriptedModel::new().then_text("fresh"));
    let agent = LlmAgent::builder(model.clone())
        .instructions("sys")
        .memory(memory)
        .context_policy(PastTheEnd)
        .build()
        .unwrap();
    let result = agent
        .run("new", &RunContext::new().with_session("s"))
        .await
        .unwrap();
    assert_eq!(result.text, "fresh");
    let sent: Vec<String> = model.requests()[0]
        .messages
        .iter()
        .map(Message::text)
        .collect();
    assert_eq!(sent, ["sys", "new"]);
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Size {
    bytes: usize,
}

#[tokio::test]
async fn a_huge_tool_result_reaches_the_model_cut_to_the_default_cap() {
    let huge = tool_fn("huge", "Returns many bytes.", |s: Size, _| async move {
        Ok::<_, ToolError>("x".repeat(s.bytes))
    });
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call("huge", json!({"bytes": 8 * 1024 * 1024}))
            .then_text("ok"),
    );
    let agent = LlmAgent::builder(model.clone()).tool(huge).build().unwrap();
    let ctx = RunContext::new();
    let events: Vec<RunEvent> = futures::StreamExt::collect(agent.run_stream("go", &ctx)).await;
    let sent = &model.requests()[1];
    let content = &sent.last_tool_results().next().unwrap().content;
    let cap = RunLimits::default().max_tool_result_bytes;
    assert!(content.len() < cap + 200, "{}", content.len());
    assert!(content.starts_with(&"x".repeat(cap)));
    assert!(
        content.contains(&format!("{} more bytes", 8 * 1024 * 1024 - cap)),
        "{}",
        &content[cap..]
    );
    // The event says what the model read.
    let reported = events.iter().find_map(|e| match e {
        RunEvent::ToolCallFinished { content, .. } => Some(content),
        _ => None,
    });
    assert_eq!(reported, Some(content));
}
