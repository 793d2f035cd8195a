//! Typed answers on the scripted model: the schema of each shape of type (and its strict
//! form), the modes' requests, checking and re-asking within the budget, the typed error
//! past it, a final answer given beside another tool call, and the retry count across a
//! serialised pause.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent_core::backends::openai::strict_schema;
use agent_core::output::{
    FINAL_ANSWER_TOOL, Output, OutputMode, answer_schema, extract_json, strict_problem,
};
use agent_core::prelude::*;
use agent_core::schema::schema_for;
use agent_core::testing::ScriptedModel;
use agent_core::{
    Action, Capabilities, Input, ModelSettings, ResponseFormat, RunState, ToolChoice, ToolSet,
    check_history,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------- shapes

/// A postal address.
#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Address {
    /// The street and number.
    street: String,
    city: String,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Priority {
    Low,
    High,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Shape {
    Circle { radius: f64 },
    Square { side: f64 },
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Meters(f64);

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Person {
    name: String,
    nickname: Option<String>,
    age: u8,
    balance: i64,
    home: Address,
    tags: Vec<String>,
    priority: Priority,
}

#[derive(Debug, Deserialize, JsonSchema, PartialEq)]
struct Scores {
    scores: BTreeMap<String, u32>,
}

fn props(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn a_struct_keeps_its_fields_descriptions_and_strict_form_closes_every_object() {
    let (schema, wrapped) = answer_schema(schema_for::<Person>());
    assert!(!wrapped);
    assert_eq!(schema["type"], "object");
    assert_eq!(
        schema["properties"]["home"]["properties"]["street"]["description"],
        "The street and number."
    );
    assert_eq!(strict_problem(&schema), None);
    let strict = strict_schema(schema.clone());
    // Every field required, optional ones nullable, every object closed.
    let mut all = props(&strict);
    all.sort();
    let mut required: Vec<String> = strict["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    required.sort();
    assert_eq!(all, required);
    assert_eq!(strict["additionalProperties"], false);
    assert_eq!(strict["properties"]["home"]["additionalProperties"], false);
    assert_eq!(
        strict["properties"]["home"]["required"],
        json!(["city", "street"])
    );
    let nickname = &strict["properties"]["nickname"]["type"];
    assert_eq!(nickname, &json!(["string", "null"]), "{strict}");
    assert_eq!(strict["properties"]["name"]["type"], "string");
    assert_eq!(strict["properties"]["age"]["type"], "integer");
    assert_eq!(strict["properties"]["balance"]["type"], "integer");
    assert_eq!(strict["properties"]["tags"]["type"], "array");
    assert_eq!(strict["properties"]["tags"]["items"]["type"], "string");
    assert_eq!(
        strict["properties"]["priority"]["enum"],
        json!(["low", "high"])
    );
}

#[test]
fn shapes_that_are_not_objects_travel_wrapped_as_value() {
    for (name, schema) in [
        ("Vec<Address>", schema_for::<Vec<Address>>()),
        ("unit enum", schema_for::<Priority>()),
        ("tagged enum", schema_for::<Shape>()),
        ("newtype", schema_for::<Meters>()),
        ("integer", schema_for::<u32>()),
    ] {
        let (wrapped_schema, wrapped) = answer_schema(schema);
        assert!(wrapped, "{name}");
        assert_eq!(wrapped_schema["type"], "object", "{name}");
        assert_eq!(wrapped_schema["required"], json!(["value"]), "{name}");
        assert_eq!(strict_problem(&wrapped_schema), None, "{name}");
        let strict = strict_schema(wrapped_schema);
        assert_eq!(strict["additionalProperties"], false, "{name}");
    }
    // The array's items are closed objects in the strict form.
    let (schema, _) = answer_schema(schema_for::<Vec<Address>>());
    let strict = strict_schema(schema);
    assert_eq!(
        strict["properties"]["value"]["items"]["additionalProperties"],
        false
    );
    // The tagged enum's branches are each closed, with the tag required.
    let (schema, _) = answer_schema(schema_for::<Shape>());
    let strict = strict_schema(schema);
    let branches = strict["properties"]["value"]["oneOf"]
        .as_array()
        .or(strict["properties"]["value"]["anyOf"].as_array())
        .unwrap()
        .clone();
    assert_eq!(branches.len(), 2);
    for branch in branches {
        assert_eq!(branch["additionalProperties"], false, "{branch}");
        assert!(
            branch["required"]
                .as_array()
                .unwrap()
                .contains(&json!("kind"))
        );
    }
}

#[test]
fn a_map_cannot_be_strict_and_the_problem_names_its_field() {
    let (schema, _) = answer_schema(schema_for::<Scores>());
    let problem = strict_problem(&schema).unwrap();
    assert!(problem.starts_with("`/scores` is a map"), "{problem}");
    // Native mode refuses it unless non-strict output is allowed.
    let caps = Capabilities {
        structured_output: true,
        ..Capabilities::default()
    };
    let error = Output::<Scores>::new()
        .mode(OutputMode::Native)
        .spec(caps, false)
        .unwrap_err();
    assert!(error.0.contains("`/scores`"), "{error}");
    let spec = Output::<Scores>::new()
        .mode(OutputMode::Native)
        .allow_non_strict()
        .spec(caps, false)
        .unwrap();
    assert!(!spec.strict);
}

#[test]
fn auto_mode_picks_tools_with_tools_native_without_and_prompted_without_either() {
    let native = Capabilities {
        structured_output: true,
        ..Capabilities::default()
    };
    let plain = Capabilities::default();
    let no_tools = Capabilities {
        tools: false,
        ..Capabilities::default()
    };
    let mode = |caps, has_tools| Output::<Address>::new().spec(caps, has_tools).unwrap().mode;
    assert_eq!(mode(native, true), OutputMode::Tool);
    assert_eq!(mode(native, false), OutputMode::Native);
    assert_eq!(mode(plain, false), OutputMode::Tool);
    assert_eq!(mode(no_tools, false), OutputMode::Prompted);
}

#[test]
fn json_is_found_after_a_think_block_and_inside_fences() {
    assert_eq!(extract_json("{\"a\": 1}").unwrap(), json!({"a": 1}));
    assert_eq!(
        extract_json("<think>{not this}</think>\n```json\n{\"a\": [1, 2]}\n```").unwrap(),
        json!({"a": [1, 2]})
    );
    assert_eq!(
        extract_json("Sure! [1, 2] is the list.").unwrap(),
        json!([1, 2])
    );
    assert!(extract_json("no json here").is_err());
    assert!(extract_json("<think>only thinking").is_err());
}

// ---------------------------------------------------------------- runs

fn agent(model: Arc<ScriptedModel>) -> LlmAgent {
    LlmAgent::builder(model).build().unwrap()
}

#[tokio::test]
async fn an_invalid_answer_goes_back_with_its_pointer_and_the_valid_one_is_taken() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call(FINAL_ANSWER_TOOL, json!({"street": "1 Main St", "city": 7}))
            .then_tool_call(
                FINAL_ANSWER_TOOL,
                json!({"street": "1 Main St", "city": "Springfield"}),
            ),
    );
    let typed = agent(model.clone())
        .ask_as::<Address>("Where is it?")
        .await
        .unwrap();
    assert_eq!(
        typed.value,
        Address {
            street: "1 Main St".into(),
            city: "Springfield".into()
        }
    );
    assert_eq!(typed.turns, 2);
    assert_eq!(
        typed.output,
        Some(json!({"street": "1 Main St", "city": "Springfield"}))
    );
    // The second request carries the feedback as the failed call's result.
    let requests = model.requests();
    assert_eq!(requests.len(), 2);
    let feedback = requests[1].last_tool_results().next().unwrap();
    assert!(feedback.is_error);
    assert!(feedback.content.contains("`/city`"), "{}", feedback.content);
    assert!(feedback.content.contains("string"), "{}", feedback.content);
    // Tool mode without other tools forces the answer tool.
    assert_eq!(
        requests[0].tool_choice,
        ToolChoice::Tool(FINAL_ANSWER_TOOL.into())
    );
    assert_eq!(requests[0].tools.len(), 1);
    check_history(&typed.new_messages).unwrap();
}

#[tokio::test]
async fn always_invalid_answers_end_with_the_typed_error_after_the_budget() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("not json")
            .then_text("{\"street\": 1}")
            .then_text("{\"street\": \"x\"}"),
    );
    let error = agent(model.clone())
        .run_as::<Address>("Where?", &RunContext::new(), &Output::new().max_retries(2))
        .await
        .unwrap_err();
    let AgentError::InvalidOutput { attempts, partial } = &error else {
        panic!("{error}");
    };
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[0].contains("not valid JSON"), "{}", attempts[0]);
    assert!(attempts[1].contains("`/street`"), "{}", attempts[1]);
    assert!(attempts[2].contains("city"), "{}", attempts[2]);
    assert_eq!(partial.turns, 3);
    check_history(&partial.new_messages).unwrap();
    model.assert_complete();
}

#[tokio::test]
async fn a_validator_refusal_goes_back_to_the_model_and_counts_against_the_budget() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_text(r#"{"street": "", "city": "Paris"}"#)
            .then_text(r#"{"street": "5 Rue Cler", "city": "Paris"}"#),
    );
    let output = Output::<Address>::new().validate(|a| {
        if a.street.is_empty() {
            Err("the street is empty".into())
        } else {
            Ok(())
        }
    });
    let typed = agent(model.clone())
        .run_as("Where?", &RunContext::new(), &output)
        .await
        .unwrap();
    assert_eq!(typed.value.street, "5 Rue Cler");
    let second = model.requests()[1].clone();
    assert!(
        second
            .last_user_text()
            .unwrap()
            .contains("the street is empty"),
        "{second:?}"
    );
    // With no retries, the same refusal is the typed error.
    let model = Arc::new(ScriptedModel::new().then_text(r#"{"street": "", "city": "Paris"}"#));
    let error = agent(model)
        .run_as("Where?", &RunContext::new(), &output.clone().max_retries(0))
        .await
        .unwrap_err();
    assert!(matches!(error, AgentError::InvalidOutput { ref attempts, .. } if attempts.len() == 1));
}

#[tokio::test]
async fn another_tool_called_beside_the_answer_runs_once_then_the_answer_is_taken() {
    #[derive(Deserialize, JsonSchema)]
    struct Note {
        text: String,
    }
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let model = Arc::new(ScriptedModel::new().then_tool_calls([
        ("note", json!({"text": "seen"})),
        (
            FINAL_ANSWER_TOOL,
            json!({"street": "2 High St", "city": "Oxford"}),
        ),
    ]));
    let agent = LlmAgent::builder(model.clone())
        .tool(tool_fn("note", "Takes a note.", move |n: Note, _| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(n.text)
            }
        }))
        .build()
        .unwrap();
    let typed = agent
        .ask_as::<Address>("Note it, then answer.")
        .await
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(typed.value.city, "Oxford");
    assert_eq!(typed.turns, 1);
    // With other tools, every turn must call one (the answer included).
    assert_eq!(model.requests()[0].tool_choice, ToolChoice::Required);
    check_history(&typed.new_messages).unwrap();
    model.assert_complete();
}

/// The scripted model, claiming schema-constrained output.
struct Constraining(Arc<ScriptedModel>);

#[async_trait]
impl ChatModel for Constraining {
    fn provider(&self) -> &str {
        "scripted"
    }
    fn model(&self) -> &str {
        "constraining"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            structured_output: true,
            ..Capabilities::default()
        }
    }
    async fn chat(
        &self,
        request: &agent_core::ChatRequest,
    ) -> Result<agent_core::ChatResponse, agent_core::ModelError> {
        self.0.chat(request).await
    }
}

#[tokio::test]
async fn native_mode_is_refused_by_a_model_that_cannot_constrain_its_output() {
    let model = Arc::new(ScriptedModel::new());
    let error = agent(model.clone())
        .run_as::<Address>(
            "?",
            &RunContext::new(),
            &Output::new().mode(OutputMode::Native),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentError::OutputSchema(ref m) if m.contains("structured_output")),
        "{error}"
    );
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn native_mode_sets_the_response_format_and_prompted_mode_the_instructions() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_text(r#"{"street": "a", "city": "b"}"#)
            .then_text("<think>hmm</think>```json\n{\"street\": \"a\", \"city\": \"b\"}\n```"),
    );
    let agent = LlmAgent::builder(Arc::new(Constraining(model.clone())))
        .instructions("Be exact.")
        .build()
        .unwrap();
    let ctx = RunContext::new();
    agent
        .run_as::<Address>("?", &ctx, &Output::new().mode(OutputMode::Native))
        .await
        .unwrap();
    let typed = agent
        .run_as::<Address>("?", &ctx, &Output::new().mode(OutputMode::Prompted))
        .await
        .unwrap();
    assert_eq!(typed.value.city, "b");
    let requests = model.requests();
    let ResponseFormat::JsonSchema {
        name,
        schema,
        strict,
    } = &requests[0].response_format
    else {
        panic!("{:?}", requests[0].response_format);
    };
    assert_eq!(name, "Address");
    assert!(*strict);
    assert_eq!(schema["required"], json!(["street", "city"]));
    assert!(requests[0].tools.is_empty());
    assert_eq!(requests[1].response_format, ResponseFormat::Text);
    let system = requests[1].messages[0].text();
    assert!(system.starts_with("Be exact."), "{system}");
    assert!(system.contains("\"street\""), "{system}");
    // The instructions go to the model, not into the history.
    assert!(
        typed
            .new_messages
            .iter()
            .all(|m| !m.text().contains("JSON Schema"))
    );
}

#[tokio::test]
async fn a_typed_agent_answers_every_run_with_its_type() {
    let model = Arc::new(
        ScriptedModel::new()
            .then_text("[\"a\", \"b\"]")
            .then_text("{\"value\": [\"c\"]}"),
    );
    let agent = LlmAgent::builder(model)
        .output_type::<Vec<String>>()
        .build()
        .unwrap();
    assert_eq!(agent.ask("one").await.unwrap().value, vec!["a", "b"]);
    assert_eq!(agent.ask("two").await.unwrap().value, vec!["c"]);
}

#[test]
fn the_retry_count_survives_a_serialised_pause() {
    let spec = Output::<Address>::new()
        .mode(OutputMode::Prompted)
        .max_retries(1)
        .spec(Capabilities::default(), false)
        .unwrap();
    let tools = ToolSet::empty();
    let mut state = RunState::new(
        "run_typed",
        vec![],
        vec![Message::user("Where?")],
        ModelSettings::default(),
        Default::default(),
    )
    .with_output(spec);
    assert!(matches!(
        state.step(&tools, Input::Resume),
        Action::CallModel(_)
    ));
    let bad = agent_core::ChatResponse::text("{\"street\": 3}");
    assert!(matches!(
        state.step(&tools, Input::ModelResponse(bad.clone())),
        Action::CallModel(_)
    ));
    assert_eq!(state.output_errors().len(), 1);
    let saved = serde_json::to_string(&state).unwrap();
    let mut restored: RunState = serde_json::from_str(&saved).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.output_errors().len(), 1);
    match restored.step(&tools, Input::ModelResponse(bad)) {
        Action::Failed(AgentError::InvalidOutput { attempts, partial }) => {
            assert_eq!(attempts.len(), 2);
            check_history(&partial.new_messages).unwrap();
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_state_saved_before_typed_answers_existed_still_loads() {
    let state = RunState::new(
        "run_old",
        vec![],
        vec![Message::user("Hi")],
        ModelSettings::default(),
        Default::default(),
    );
    let mut saved: Value = serde_json::to_value(&state).unwrap();
    assert!(saved.get("output").is_none());
    saved.as_object_mut().unwrap().remove("output");
    let restored: RunState = serde_json::from_value(saved).unwrap();
    assert_eq!(restored.output_spec(), None);
}

#[tokio::test]
async fn a_tool_of_the_agent_named_final_answer_is_refused_in_tool_mode() {
    #[derive(Deserialize, JsonSchema)]
    struct Empty {}
    let model = Arc::new(ScriptedModel::new());
    let agent = LlmAgent::builder(model.clone())
        .tool(tool_fn(
            FINAL_ANSWER_TOOL,
            "Mine.",
            |_: Empty, _| async move { Ok("mine") },
        ))
        .build()
        .unwrap();
    let error = agent.ask_as::<Address>("?").await.unwrap_err();
    assert!(
        matches!(error, AgentError::OutputSchema(ref m) if m.contains("final_answer")),
        "{error}"
    );
    assert!(model.requests().is_empty());
}

#[tokio::test]
async fn a_streamed_typed_run_shows_the_answers_json_as_it_comes_then_the_value() {
    use agent_core::output::TypedEvent;
    use futures::StreamExt;
    // Tool mode: the first answer is invalid and sent back; each attempt's JSON streams.
    let model = Arc::new(
        ScriptedModel::new()
            .then_tool_call(FINAL_ANSWER_TOOL, json!({"street": "1 Main St"}))
            .then_tool_call(
                FINAL_ANSWER_TOOL,
                json!({"street": "1 Main St", "city": "Ely"}),
            ),
    );
    let agent = LlmAgent::builder(model).streaming(true).build().unwrap();
    let (ctx, output) = (RunContext::new(), Output::<Address>::new());
    let events: Vec<TypedEvent<Address>> =
        agent.run_stream_as("Where?", &ctx, &output).collect().await;
    let partials: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            TypedEvent::PartialAnswer(json) => Some(json),
            _ => None,
        })
        .collect();
    assert_eq!(partials.len(), 2, "{events:?}");
    assert_eq!(
        serde_json::from_str::<Value>(partials[1]).unwrap(),
        json!({"street": "1 Main St", "city": "Ely"})
    );
    let Some(TypedEvent::Answer(answer)) = events.last() else {
        panic!("{:?}", events.last());
    };
    assert_eq!(answer.value.city, "Ely");
    assert_eq!(answer.turns, 2);
    // A text answer streams its text; a failure ends the stream with the typed error.
    let model = Arc::new(ScriptedModel::new().then_text("{\"street\": 5}"));
    let agent = LlmAgent::builder(Arc::new(Constraining(model)))
        .streaming(true)
        .build()
        .unwrap();
    let output = Output::<Address>::new().max_retries(0);
    let events: Vec<TypedEvent<Address>> =
        agent.run_stream_as("Where?", &ctx, &output).collect().await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TypedEvent::PartialAnswer(json) if json == "{\"street\": 5}"))
    );
    assert!(matches!(
        events.last(),
        Some(TypedEvent::Failed(AgentError::InvalidOutput { .. }))
    ));
}
