//! The line protocol a local model speaks, whatever its training: the prompt that teaches it,
//! and the parser for what it writes.
//!
//! One step per line:
//!
//! ```text
//! TASK <the user's message>
//! CALL <tool> <arguments as one line of JSON>
//! RESULT <the tool's result, on one line>
//! ANSWER <the final answer>
//! ```
//!
//! A base model (no chat template) reads the whole conversation as one document: the
//! instructions, the tools (name, description, arguments and an example call built from the
//! schema), a worked example, then the conversation in this format; it continues with one
//! line. A chat model gets the same text as its system message and the steps as turns of its
//! own template. Either way the line it writes is decoded under the grammar of
//! [`super::grammar`], so a `CALL` always names a real tool with arguments that fit its
//! schema.

use serde_json::Value;

use crate::message::{AssistantMessage, Message, ToolCall};
use crate::model::ToolSpec;

/// Longest tool result put into the prompt, in characters; the rest is cut with a note.
const MAX_RESULT_CHARS: usize = 2000;

/// How many of a tool's examples the prompt shows (its last ones) when other tools are
/// offered too; a tool alone shows all of its examples.
const EXAMPLES_BESIDE_OTHER_TOOLS: usize = 3;

/// One turn of the conversation, in the line protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Turn {
    /// Who says it: `user` or `assistant`.
    pub role: &'static str,
    /// The lines, each ending with `\n`.
    pub text: String,
}

/// The text before the conversation: instructions, tools, the format, the tools' own
/// examples (see [`ToolExample`](crate::ToolExample)) and a worked example. With `answer`
/// (a typed answer's JSON Schema), the answer is one line of JSON with those fields: the
/// fields and an example of the line are shown (the grammar alone would let a small model
/// write any value that parses).
pub fn preamble(instructions: &str, tools: &[ToolSpec], answer: Option<&Value>) -> String {
    let mut s = String::new();
    if !instructions.trim().is_empty() {
        s.push_str(instructions.trim());
        s.push_str("\n\n");
    }
    if let Some(schema) = answer {
        // A worked example whose task states the values the answer holds: a small model
        // learns to copy from the task, not from the example.
        let example = example_arguments(schema);
        let stated: Vec<String> = serde_json::from_str::<Value>(&example)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k} {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        s.push_str(&format!(
            "The answer is one line: ANSWER, then one JSON object with these fields: {}. Take \
             each value from the task, as the task says it; write null for what the task does \
             not say.\n\nTASK {}\nANSWER {example}\n\n",
            describe_arguments(schema),
            stated.join(", "),
        ));
        if tools.is_empty() {
            return s;
        }
    }
    if tools.is_empty() {
        s.push_str(
            "Answer the task on one line that starts with ANSWER.\n\n\
             TASK Who wrote Les Misérables?\n\
             ANSWER Victor Hugo wrote Les Misérables.\n\n",
        );
        return s;
    }
    s.push_str("Tools:\n");
    for tool in tools {
        s.push_str(&format!(
            "- {}: {}\n  arguments: {}\n",
            tool.name,
            one_line(&tool.description),
            describe_arguments(&tool.parameters),
        ));
        if tool.examples.is_empty() {
            s.push_str(&format!(
                "  example: CALL {} {}\n",
                tool.name,
                example_arguments(&tool.parameters)
            ));
        }
    }
    s.push_str(
        "\nWrite one line per step. To use a tool, write CALL, the tool's name and its \
         arguments as JSON; its result comes back on a line that starts with RESULT. Use a \
         tool whenever one fits, and never guess a result. When you know the answer, write \
         ANSWER and the answer, starting with what the RESULT says. If a RESULT starts with \
         error, write the CALL again with the mistake fixed, or ANSWER that the tool failed: \
         never state a number that no RESULT gave.\n\n",
    );
    // The tools' examples, taking turns between tools so no one tool dominates, aligned to
    // the end so that every tool has an example in the last round (the closest to the
    // task: a small model leans on what it read last).
    // Beside other tools, a tool shows only its last few examples: one tool with many would
    // drown the others out (a small model then calls it for everything).
    let cap = if tools.len() > 1 {
        EXAMPLES_BESIDE_OTHER_TOOLS
    } else {
        usize::MAX
    };
    let shown = |tool: &ToolSpec| tool.examples.len().min(cap);
    let most = tools.iter().map(shown).max().unwrap_or(0);
    for round in 0..most {
        for tool in tools {
            let examples = &tool.examples[tool.examples.len() - shown(tool)..];
            let skip = most - examples.len();
            if let Some(example) = round.checked_sub(skip).and_then(|i| examples.get(i)) {
                s.push_str(&format!(
                    "TASK {}\nCALL {} {}\n",
                    one_line(&example.task),
                    tool.name,
                    example.arguments
                ));
                if let Some((result, answer)) = &example.outcome {
                    s.push_str(&format!(
                        "RESULT {}\nANSWER {}\n",
                        one_line(result),
                        one_line(answer)
                    ));
                }
                s.push('\n');
            }
        }
    }
    s.push_str(
        "TASK Who wrote Les Misérables?\n\
         CALL lookup {\"query\": \"author of Les Misérables\"}\n\
         RESULT Les Misérables is a novel by Victor Hugo, published in 1862.\n\
         ANSWER Victor Hugo.\n\n\
         TASK When was the Eiffel Tower finished?\n\
         CALL lookup {\"query\": \"Eifel Tower\"}\n\
         RESULT error: no page is named Eifel Tower\n\
         CALL lookup {\"query\": \"Eiffel Tower\"}\n\
         RESULT The Eiffel Tower in Paris was finished in 1889.\n\
         ANSWER It was finished in 1889.\n\n",
    );
    s
}

/// The conversation as turns of the line protocol. System messages are left out (they belong
/// to the preamble: see [`instructions`]).
pub fn turns(messages: &[Message]) -> Vec<Turn> {
    let mut out: Vec<Turn> = Vec::new();
    let mut push = |role: &'static str, line: String| match out.last_mut() {
        Some(last) if last.role == role => last.text.push_str(&line),
        _ => out.push(Turn { role, text: line }),
    };
    for message in messages {
        match message {
            Message::System { .. } => {}
            Message::User { .. } => push("user", format!("TASK {}\n", one_line(&message.text()))),
            Message::Assistant(a) => {
                for call in &a.tool_calls {
                    push(
                        "assistant",
                        format!("CALL {} {}\n", call.name, compact_json(&call.arguments)),
                    );
                }
                if a.tool_calls.is_empty() && !a.content.trim().is_empty() {
                    push("assistant", format!("ANSWER {}\n", one_line(&a.content)));
                }
            }
            Message::Tool(r) => {
                let mut content = one_line(&r.content);
                if content.chars().count() > MAX_RESULT_CHARS {
                    content = content.chars().take(MAX_RESULT_CHARS).collect();
                    content.push_str(" [cut]");
                }
                let line = if r.is_error {
                    format!("RESULT error: {content}\n")
                } else {
                    format!("RESULT {content}\n")
                };
                push("user", line);
            }
        }
    }
    out
}

/// The system messages of a conversation, joined: the instructions.
pub fn instructions(messages: &[Message]) -> String {
    messages
        .iter()
        .filter(|m| matches!(m, Message::System { .. }))
        .map(Message::text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A whole prompt for a base model: preamble, then the conversation, ready for the next line.
pub fn base_prompt(messages: &[Message], tools: &[ToolSpec], answer: Option<&Value>) -> String {
    let mut s = preamble(&instructions(messages), tools, answer);
    for turn in turns(messages) {
        s.push_str(&turn.text);
    }
    s
}

/// What the model wrote, parsed.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `CALL tool {json}`.
    Call {
        /// The tool.
        name: String,
        /// The arguments, as the model wrote them.
        arguments: String,
    },
    /// `ANSWER text`.
    Answer(String),
}

/// Parses the line the model wrote. Anything that is not a `CALL` line is an answer (a model
/// that forgot the `ANSWER` keyword still answered). A call of an unknown tool stays a call,
/// so the loop tells the model which tools exist.
pub fn parse_step(line: &str) -> Step {
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("CALL ") {
        let rest = rest.trim_start();
        let (name, arguments) = match rest.find(|c: char| c.is_whitespace() || c == '{') {
            Some(i) => (&rest[..i], rest[i..].trim()),
            None => (rest, ""),
        };
        if !name.is_empty() {
            let arguments = if arguments.is_empty() {
                "{}"
            } else {
                arguments
            };
            return Step::Call {
                name: name.to_owned(),
                arguments: arguments.to_owned(),
            };
        }
    }
    let text = line
        .strip_prefix("ANSWER")
        .map(str::trim_start)
        .unwrap_or(line);
    Step::Answer(text.to_owned())
}

/// The assistant message for a parsed step.
pub fn step_message(step: Step) -> AssistantMessage {
    match step {
        Step::Call { name, arguments } => AssistantMessage::with_tool_calls(
            "",
            vec![ToolCall {
                id: String::new(),
                name,
                arguments,
            }],
        ),
        Step::Answer(text) => AssistantMessage::text(text),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn compact_json(raw: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| one_line(raw))
}

/// `{"expression": string (The expression, e.g. "2 + 2".), "time_zone"?: string}`: the
/// arguments in one line, each with the start of its description.
fn describe_arguments(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return "{}".to_owned();
    };
    let required = required(schema);
    let fields: Vec<String> = props
        .iter()
        .map(|(name, prop)| {
            let optional = if required.contains(&name.as_str()) {
                ""
            } else {
                "?"
            };
            let mut field = format!("\"{name}\"{optional}: {}", describe_type(prop));
            if let Some(d) = prop.get("description").and_then(Value::as_str) {
                let d: String = one_line(d).chars().take(120).collect();
                field.push_str(&format!(" ({d})"));
            }
            field
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn describe_type(prop: &Value) -> String {
    if let Some(choices) = choices(prop) {
        return choices
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    match prop.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!(
                "[{}]",
                prop.get("items")
                    .map(describe_type)
                    .unwrap_or_else(|| "any".into())
            )
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_owned(),
    }
}

/// The allowed values of a property given as `enum`, `const` or a `oneOf`/`anyOf` of consts.
pub(crate) fn choices(prop: &Value) -> Option<Vec<Value>> {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return Some(values.clone());
    }
    if let Some(value) = prop.get("const") {
        return Some(vec![value.clone()]);
    }
    let alternatives = prop
        .get("oneOf")
        .or_else(|| prop.get("anyOf"))
        .and_then(Value::as_array)?;
    alternatives
        .iter()
        .map(|a| a.get("const").cloned())
        .collect()
}

pub(crate) fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// An example call's arguments, built from the schema: each required property with the
/// example its description gives (`e.g. "..."`), its first allowed value, or a placeholder.
pub fn example_arguments(schema: &Value) -> String {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return "{}".to_owned();
    };
    let required = required(schema);
    let mut out = serde_json::Map::new();
    for (name, prop) in props {
        if required.contains(&name.as_str()) {
            out.insert(name.clone(), example_value(prop));
        }
    }
    Value::Object(out).to_string()
}

fn example_value(prop: &Value) -> Value {
    if let Some(first) = choices(prop).and_then(|c| c.into_iter().next()) {
        return first;
    }
    let kind = match prop.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match kind {
        "integer" => Value::from(1),
        "number" => Value::from(1.5),
        "boolean" => Value::from(true),
        "array" => Value::Array(Vec::new()),
        "object" => serde_json::from_str(&example_arguments(prop)).unwrap_or(Value::Null),
        _ => Value::from(
            prop.get("description")
                .and_then(Value::as_str)
                .and_then(quoted_example)
                .unwrap_or("text"),
        ),
    }
}

/// The first quoted example in a description: `e.g. "12 * 3"` → `12 * 3`.
fn quoted_example(description: &str) -> Option<&str> {
    let at = description.find("e.g.")?;
    let rest = &description[at..];
    let start = rest.find('"')? + 1;
    let len = rest[start..].find('"')?;
    Some(&rest[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ToolResult;
    use serde_json::json;

    fn calculator() -> ToolSpec {
        ToolSpec {
            name: "calculator".into(),
            description: "Evaluates an arithmetic expression.\nUse it for every calculation."
                .into(),
            parameters: json!({
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "The expression, e.g. \"12.5% of 3280 + sqrt(1764)\"."}},
                "required": ["expression"]
            }),
            strict: false,
            examples: Vec::new(),
        }
    }

    fn clock() -> ToolSpec {
        ToolSpec {
            name: "clock".into(),
            description: "Tells the time.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "action": {"oneOf": [{"const": "now"}, {"const": "days_between"}]},
                    "time_zone": {"type": ["string", "null"]}
                },
                "required": ["action"]
            }),
            strict: false,
            examples: Vec::new(),
        }
    }

    #[test]
    fn the_preamble_lists_each_tool_with_its_arguments_and_an_example_call() {
        let p = preamble("Be brief.", &[calculator(), clock()], None);
        assert!(p.starts_with("Be brief.\n\nTools:\n"));
        assert!(p.contains(
            "- calculator: Evaluates an arithmetic expression. Use it for every calculation.\n  \
             arguments: {\"expression\": string (The expression, e.g. \"12.5% of 3280 + sqrt(1764)\".)}\n  \
             example: CALL calculator {\"expression\":\"12.5% of 3280 + sqrt(1764)\"}\n"
        ), "{p}");
        // A tool's own examples become worked lines instead of the made-up example.
        let mut taught = clock();
        taught.examples = vec![crate::model::ToolExample::new(
            "Time in Paris?",
            json!({"action": "now", "time_zone": "Europe/Paris"}),
        )];
        let q = preamble("", &[calculator(), taught], None);
        assert!(q.contains("TASK Time in Paris?\nCALL clock {\"action\":\"now\",\"time_zone\":\"Europe/Paris\"}\n\n"), "{q}");
        assert!(!q.contains("example: CALL clock"), "{q}");
        assert!(
            p.contains(
                "arguments: {\"action\": \"now\" | \"days_between\", \"time_zone\"?: string | null}"
            ),
            "{p}"
        );
        assert!(
            p.contains("example: CALL clock {\"action\":\"now\"}"),
            "{p}"
        );
        assert!(p.contains("ANSWER Victor Hugo.\n\n"));
        // A failed call is shown being fixed, not answered around.
        assert!(
            p.ends_with(
                "RESULT error: no page is named Eifel Tower\n\
                 CALL lookup {\"query\": \"Eiffel Tower\"}\n\
                 RESULT The Eiffel Tower in Paris was finished in 1889.\n\
                 ANSWER It was finished in 1889.\n\n"
            ),
            "{p}"
        );
    }

    #[test]
    fn a_conversation_becomes_lines() {
        let call = ToolCall::new("c1", "calculator", &json!({"expression": "2 + 2"}));
        let messages = vec![
            Message::system("Be brief."),
            Message::user("What is\n2 + 2?"),
            Message::Assistant(AssistantMessage::with_tool_calls("", vec![call])),
            Message::Tool(ToolResult::ok(
                &ToolCall::new("c1", "calculator", &json!({})),
                "4",
            )),
            Message::Assistant(AssistantMessage::text("It is 4.")),
            Message::user("And 3 + 3?"),
        ];
        let prompt = base_prompt(&messages, &[calculator()], None);
        assert!(prompt.starts_with("Be brief.\n\n"));
        assert!(
            prompt.ends_with(
                "TASK What is 2 + 2?\nCALL calculator {\"expression\":\"2 + 2\"}\nRESULT 4\n\
             ANSWER It is 4.\nTASK And 3 + 3?\n"
            ),
            "{prompt}"
        );
        let t = turns(&messages);
        assert_eq!(
            t.iter().map(|t| t.role).collect::<Vec<_>>(),
            ["user", "assistant", "user", "assistant", "user"]
        );
    }

    #[test]
    fn long_and_failed_results_are_kept_on_one_line() {
        let call = ToolCall::new("c1", "calculator", &json!({}));
        let failed = ToolResult::error(&call, "bad\ninput");
        let long = ToolResult::ok(&call, "x".repeat(3000));
        let t = turns(&[Message::Tool(failed), Message::Tool(long)]);
        assert!(t[0].text.starts_with("RESULT error: bad input\nRESULT xxx"));
        assert!(t[0].text.ends_with(" [cut]\n"));
    }

    #[test]
    fn steps_are_parsed() {
        assert_eq!(
            parse_step("CALL calculator {\"expression\": \"1+1\"}\n"),
            Step::Call {
                name: "calculator".into(),
                arguments: "{\"expression\": \"1+1\"}".into()
            }
        );
        assert_eq!(
            parse_step("CALL calculator{}"),
            Step::Call {
                name: "calculator".into(),
                arguments: "{}".into()
            }
        );
        assert_eq!(
            parse_step("ANSWER It is 2."),
            Step::Answer("It is 2.".into())
        );
        assert_eq!(parse_step("It is 2."), Step::Answer("It is 2.".into()));
        // A call of a tool that does not exist is still a call: the loop answers it.
        assert_eq!(
            parse_step("CALL rm {}"),
            Step::Call {
                name: "rm".into(),
                arguments: "{}".into()
            }
        );
    }
}
