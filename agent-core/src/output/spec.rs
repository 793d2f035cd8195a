//! What a typed answer must look like, as data: the schema (always an object at the top, a
//! non-object type wrapped in `{"value": ..}`), how the model is asked for it (the mode),
//! how many times it may be sent back, and the checks an answer goes through before it is
//! accepted (JSON found in the text, the schema).
//!
//! Serialisable, so it travels inside a run's state and survives a pause. It never knows a
//! provider: the backends translate a request's `response_format` or tools to their wire.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::model::ToolSpec;
use crate::schema::ArgumentValidator;

/// The name of the tool a model calls to give its answer in [`OutputMode::Tool`].
pub const FINAL_ANSWER_TOOL: &str = "final_answer";

/// How the model is asked for a typed answer.
///
/// | mode | the request carries | the answer is read from |
/// |---|---|---|
/// | `Tool` | a `final_answer` tool whose arguments are the type | that call's arguments |
/// | `Native` | the provider's schema-constrained output (`response_format`, ...) | the text |
/// | `Prompted` | the schema in the instructions | JSON found in the text |
///
/// `Auto` picks per model and run: with tools, `Tool` (a schema constraint on every turn can
/// stop a model from calling tools); without tools, `Native` where the model constrains its
/// output ([`Capabilities::structured_output`](crate::Capabilities::structured_output)),
/// else `Tool`, else `Prompted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    /// Chosen per model and run (see above).
    #[default]
    Auto,
    /// A `final_answer` tool.
    Tool,
    /// The provider's structured output.
    Native,
    /// The schema in the instructions; JSON extracted from the text.
    Prompted,
}

/// A typed answer's specification, as a run carries it. Built by
/// [`Output`](crate::output::Output); public for code that steps a
/// [`RunState`](crate::RunState) itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    /// A name for the schema (the type's name), for providers that want one.
    pub name: String,
    /// The JSON Schema of the answer: an object schema, `$ref`s inlined.
    pub schema: Value,
    /// The type is not an object and travels as `{"value": ...}`.
    #[serde(default)]
    pub wrapped: bool,
    /// Ask providers to enforce the schema strictly (OpenAI strict mode).
    #[serde(default)]
    pub strict: bool,
    /// How the model is asked (never `Auto` in a run: resolved when the run starts).
    pub mode: OutputMode,
    /// How many times an invalid answer is sent back before the run fails.
    pub max_retries: u32,
}

/// The schema of an answer of a type whose schema is `schema` (normalised): object schemas
/// stay as they are; anything else (an array, a number, an enum, a tagged enum) is wrapped
/// as the required property `value` of an object, since tools and strict modes need an
/// object at the top. Returns the schema and whether it was wrapped.
pub fn answer_schema(schema: Value) -> (Value, bool) {
    let is_object = schema.get("type").and_then(Value::as_str) == Some("object")
        && schema.get("properties").is_some();
    if is_object {
        return (schema, false);
    }
    let mut inner = schema;
    let mut defs = None;
    if let Value::Object(map) = &mut inner {
        defs = map.remove("$defs");
    }
    let mut wrapper = json!({
        "type": "object",
        "properties": {"value": inner},
        "required": ["value"],
    });
    if let (Some(defs), Value::Object(map)) = (defs, &mut wrapper) {
        map.insert("$defs".into(), defs);
    }
    (wrapper, true)
}

/// The first place where a schema cannot be made strict (every object closed, every
/// property required), as a JSON pointer into the answer and the reason; `None` when it
/// can. A map (an object whose keys are open) is the usual culprit.
///
/// ```
/// use agent_core::output::strict_problem;
/// use serde_json::json;
/// let schema = json!({"type": "object", "properties": {
///     "scores": {"type": "object", "additionalProperties": {"type": "integer"}}
/// }});
/// assert!(strict_problem(&schema).unwrap().starts_with("`/scores`"));
/// ```
pub fn strict_problem(schema: &Value) -> Option<String> {
    fn walk(node: &Value, pointer: &str) -> Option<String> {
        let Value::Object(map) = node else {
            return None;
        };
        let open = match map.get("additionalProperties") {
            Some(Value::Bool(false)) | None => false,
            Some(_) => true,
        };
        if open || map.contains_key("patternProperties") {
            let at = if pointer.is_empty() { "/" } else { pointer };
            return Some(format!(
                "`{at}` is a map (an object whose keys are not fixed), which strict structured \
                 output cannot express"
            ));
        }
        if let Some(Value::Object(props)) = map.get("properties") {
            for (name, prop) in props {
                if let Some(problem) = walk(prop, &format!("{pointer}/{name}")) {
                    return Some(problem);
                }
            }
        }
        if let Some(items) = map.get("items")
            && let Some(problem) = walk(items, &format!("{pointer}/0"))
        {
            return Some(problem);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                for branch in branches {
                    if let Some(problem) = walk(branch, pointer) {
                        return Some(problem);
                    }
                }
            }
        }
        None
    }
    walk(schema, "")
}

impl OutputSpec {
    /// The `final_answer` tool of [`OutputMode::Tool`].
    pub fn answer_tool(&self) -> ToolSpec {
        ToolSpec {
            name: FINAL_ANSWER_TOOL.into(),
            description: format!(
                "Give your final answer (a `{}`) with this call, once you have everything you \
                 need. Its arguments are the answer.",
                self.name
            ),
            parameters: self.schema.clone(),
            strict: self.strict,
            examples: Vec::new(),
        }
    }

    /// The instructions of [`OutputMode::Prompted`] (and of a wrap-up call in tool mode).
    pub fn prompt(&self) -> String {
        format!(
            "Your final answer must be one JSON value that follows this JSON Schema, and \
             nothing else: no prose, no code fences.\nSchema: {}",
            self.schema
        )
    }

    /// Checks an answer: valid against the schema, and unwrapped when the type was wrapped.
    /// The error names each problem by its JSON pointer, for the model to fix.
    pub fn check(&self, answer: Value) -> Result<Value, String> {
        let validator = ArgumentValidator::new(&self.schema)
            .map_err(|e| format!("the answer's schema is invalid: {e}"))?;
        if let Err(problems) = validator.validate(&answer) {
            let problems: Vec<String> = problems
                .into_iter()
                .map(|p| p.replacen("arguments: ", "the answer: ", 1))
                .collect();
            return Err(format!(
                "Your answer does not match the required schema:\n- {}",
                problems.join("\n- ")
            ));
        }
        if self.wrapped {
            return match answer {
                Value::Object(mut map) => Ok(map.remove("value").unwrap_or(Value::Null)),
                other => Ok(other),
            };
        }
        Ok(answer)
    }

    /// Reads an answer given as text: the JSON in it (see [`extract_json`]), checked.
    pub fn check_text(&self, text: &str) -> Result<Value, String> {
        let value = extract_json(text)?;
        // A wrapped type answered bare (`[1, 2]` rather than `{"value": [1, 2]}`) is taken.
        let value = match value {
            Value::Object(map) if self.wrapped && !map.contains_key("value") => {
                json!({"value": Value::Object(map)})
            }
            Value::Object(map) => Value::Object(map),
            other if self.wrapped => json!({"value": other}),
            other => other,
        };
        self.check(value)
    }
}

/// The JSON value in a model's text answer: a leading `<think>...</think>` block and code
/// fences are dropped, then the first JSON object or array is taken (text around it is
/// ignored). Errors say what was wrong, for the model to read.
///
/// ```
/// use agent_core::output::extract_json;
/// let text = "<think>Easy.</think>Here it is:\n```json\n{\"a\": 1}\n```";
/// assert_eq!(extract_json(text).unwrap(), serde_json::json!({"a": 1}));
/// ```
pub fn extract_json(text: &str) -> Result<Value, String> {
    let mut text = text.trim_start();
    if let Some(rest) = text.strip_prefix("<think>") {
        text = rest.split_once("</think>").map_or("", |(_, after)| after);
    }
    let text = text.trim();
    if text.is_empty() {
        return Err("Your answer was empty; answer with the JSON value.".into());
    }
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    // The first `{` or `[` from which a whole JSON value parses (fences and prose around it
    // are skipped).
    for (start, _) in text.match_indices(['{', '[']) {
        let mut values = serde_json::Deserializer::from_str(&text[start..]).into_iter::<Value>();
        if let Some(Ok(value)) = values.next() {
            return Ok(value);
        }
    }
    match serde_json::from_str::<Value>(text) {
        Err(e) => Err(format!(
            "Your answer is not valid JSON ({e}); answer with the JSON value alone."
        )),
        Ok(value) => Ok(value),
    }
}
