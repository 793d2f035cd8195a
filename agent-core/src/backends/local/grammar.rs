//! A GBNF grammar (llama.cpp's grammar format) for one line of the line protocol: either
//! `ANSWER <text>` or `CALL <tool> <json>` where the tool is one of the given tools and the
//! JSON follows that tool's schema.
//!
//! The schema subset covered is what tool schemas use: objects (required properties first,
//! then optional ones, in schema order), strings, numbers, integers, booleans, null, arrays,
//! `enum`/`const`, `oneOf`/`anyOf`, and type lists such as `["string", "null"]`. Anything
//! else accepts any JSON value. Strings may not hold a raw line break (the protocol is one
//! line a step); `\n` escapes are fine.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::protocol::{choices, required};
use crate::model::ToolSpec;

/// What the next line may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A call or an answer.
    CallOrAnswer,
    /// A call (the request requires one).
    CallOnly,
    /// An answer (no tools, or tools are off for this request).
    AnswerOnly,
    /// A call, or an answer without digits: the last tool call failed, so any number the
    /// answer could state would be invented. The model tries again or says it failed.
    CallOrAnswerWithoutNumbers,
    /// An answer without digits (tools are off, and the last tool call failed).
    AnswerWithoutNumbers,
}

impl LineKind {
    /// The same kind after a failed tool call: answers may state no number.
    pub fn after_failure(self) -> Self {
        match self {
            LineKind::CallOrAnswer => LineKind::CallOrAnswerWithoutNumbers,
            LineKind::AnswerOnly => LineKind::AnswerWithoutNumbers,
            other => other,
        }
    }
}

/// The grammar for the next line, with `root` as its start rule.
pub fn line_grammar(tools: &[ToolSpec], kind: LineKind) -> String {
    line_grammar_with_numbers(tools, kind, None, None)
}

/// The most known numbers an answer line may hold before its result.
const MAX_ANSWER_NUMBERS: usize = 6;

/// Text with at most `n` occurrences of `number`, each followed by `gap`:
/// `[^\n0-9]* (number gap (number gap ...)?)?`.
fn at_most(number: &str, gap: &str, n: usize) -> String {
    let mut rule = String::new();
    for _ in 0..n {
        rule = format!("({number} {gap} {rule})?");
    }
    format!("[^\\n0-9]* {rule}")
}

/// [`line_grammar`], with the numbers an answer may state: with `Some(numbers)`, every run
/// of digits in an answer must be one of them (taken from the task and the tool results),
/// so a small model cannot state a result no tool gave. With `must_state` (the last tool
/// result was just a number), the answer states that number.
pub fn line_grammar_with_numbers(
    tools: &[ToolSpec],
    kind: LineKind,
    numbers: Option<&[String]>,
    must_state: Option<&str>,
) -> String {
    let mut g = Grammar::default();
    let call = call_rule(&mut g, tools, kind);
    let no_numbers = matches!(
        kind,
        LineKind::CallOrAnswerWithoutNumbers | LineKind::AnswerWithoutNumbers
    );
    let known: Vec<String> = numbers
        .unwrap_or_default()
        .iter()
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(|n| literal(n))
        .collect();
    let answer = if no_numbers || (numbers.is_some() && known.is_empty()) {
        "\"ANSWER \" [^\\n0-9]+".to_owned()
    } else if numbers.is_some() {
        // Text, and numbers only whole and only known ones: a known number is followed by
        // a character that is not a digit, or ends the line. At most a few of them: a small
        // model that repeats a number ("452.452.452...") would otherwise repeat it until
        // the line's token limit.
        g.rule("known-number", &known.join(" | "));
        match must_state.filter(|n| n.chars().all(|c| c.is_ascii_digit() || c == '.')) {
            // Text around the result: the result itself is not among the numbers before
            // it, and no number follows it.
            Some(result) => {
                let result = literal(result);
                let others: Vec<&String> = known.iter().filter(|k| **k != result).collect();
                let before = if others.is_empty() {
                    "[^\\n0-9]*".to_owned()
                } else {
                    let joined: Vec<&str> = others.iter().map(|k| k.as_str()).collect();
                    g.rule("other-number", &joined.join(" | "));
                    at_most("other-number", "[^\\n0-9]+", MAX_ANSWER_NUMBERS)
                };
                g.rule("answer-before", &before);
                g.rule("answer-after", "[^\\n0-9]*");
                format!("\"ANSWER \" answer-before {result} answer-after")
            }
            None => {
                let text = format!(
                    "{} known-number?",
                    at_most("known-number", "[^\\n0-9]+", MAX_ANSWER_NUMBERS)
                );
                g.rule("answer-text", &text);
                "\"ANSWER \" answer-text".to_owned()
            }
        }
    } else {
        "\"ANSWER \" [^\\n]+".to_owned()
    };
    finish_line(g, call, kind, &answer)
}

/// The grammar for the next line when the answer must be a JSON value of `schema` (a typed
/// answer): `ANSWER` and that value, or a call as [`line_grammar`] allows. The answer cannot
/// be anything that does not follow the schema's subset covered here.
pub fn typed_line_grammar(tools: &[ToolSpec], kind: LineKind, schema: &Value) -> String {
    let mut g = Grammar::default();
    let call = call_rule(&mut g, tools, kind);
    let value = g.value("answer-value", schema);
    finish_line(g, call, kind, &format!("\"ANSWER \" {value}"))
}

/// The `call` rule (one alternative per tool, its arguments following its schema), unless
/// the line must be an answer.
fn call_rule(g: &mut Grammar, tools: &[ToolSpec], kind: LineKind) -> Option<String> {
    let answers_only = matches!(kind, LineKind::AnswerOnly | LineKind::AnswerWithoutNumbers);
    (!answers_only && !tools.is_empty()).then(|| {
        let alternatives: Vec<String> = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                let args = g.value(&format!("tool{i}-args"), &tool.parameters);
                format!("{} \" \" {args}", literal(&tool.name))
            })
            .collect();
        g.rule("call", &alternatives.join(" | "))
    })
}

/// The root rule, a call or an answer as `kind` allows, then the grammar's text.
fn finish_line(mut g: Grammar, call: Option<String>, kind: LineKind, answer: &str) -> String {
    let root = match (call, kind) {
        (Some(call), LineKind::CallOnly) => format!("\"CALL \" {call} \"\\n\""),
        (Some(call), _) => format!("(\"CALL \" {call} | {answer}) \"\\n\""),
        (None, _) => format!("{answer} \"\\n\""),
    };
    g.rules.insert("root".into(), root);
    g.finish()
}

#[derive(Default)]
struct Grammar {
    rules: BTreeMap<String, String>,
}

impl Grammar {
    fn rule(&mut self, name: &str, body: &str) -> String {
        self.rules.insert(name.to_owned(), body.to_owned());
        name.to_owned()
    }

    fn finish(mut self) -> String {
        for (name, body) in [
            ("ws", "[ ]?"),
            ("string", "\"\\\"\" char* \"\\\"\""),
            (
                "char",
                "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})",
            ),
            ("integer", "\"-\"? [0-9]{1,16}"),
            (
                "number",
                "\"-\"? [0-9]{1,16} (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?",
            ),
            ("boolean", "\"true\" | \"false\""),
            ("null", "\"null\""),
            ("value", "object | array | string | number | boolean | null"),
            (
                "object",
                "\"{\" ws (string ws \":\" ws value (\",\" ws string ws \":\" ws value)*)? ws \"}\"",
            ),
            ("array", "\"[\" ws (value (\",\" ws value)*)? ws \"]\""),
        ] {
            self.rules.entry(name.into()).or_insert_with(|| body.into());
        }
        let mut out = String::new();
        if let Some(root) = self.rules.remove("root") {
            let _ = writeln!(out, "root ::= {root}");
        }
        for (name, body) in &self.rules {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        out
    }

    /// A rule for a value of this schema; returns the rule (or expression) to use.
    fn value(&mut self, name: &str, schema: &Value) -> String {
        if let Some(values) = choices(schema) {
            let body = values
                .iter()
                .map(|v| literal(&v.to_string()))
                .collect::<Vec<_>>()
                .join(" | ");
            return self.rule(name, &body);
        }
        if let Some(alternatives) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Value::as_array)
        {
            let body = alternatives
                .iter()
                .enumerate()
                .map(|(i, a)| self.value(&format!("{name}-{i}"), a))
                .collect::<Vec<_>>()
                .join(" | ");
            return self.rule(name, &body);
        }
        match schema.get("type") {
            Some(Value::String(t)) => self.typed(name, t, schema),
            Some(Value::Array(types)) => {
                let body = types
                    .iter()
                    .filter_map(Value::as_str)
                    .enumerate()
                    .map(|(i, t)| self.typed(&format!("{name}-{i}"), t, schema))
                    .collect::<Vec<_>>()
                    .join(" | ");
                self.rule(name, &body)
            }
            _ if schema.get("properties").is_some() => self.typed(name, "object", schema),
            _ => "value".to_owned(),
        }
    }

    fn typed(&mut self, name: &str, kind: &str, schema: &Value) -> String {
        match kind {
            "string" => "string".to_owned(),
            "integer" => "integer".to_owned(),
            "number" => "number".to_owned(),
            "boolean" => "boolean".to_owned(),
            "null" => "null".to_owned(),
            "array" => match schema.get("items") {
                Some(items) => {
                    let item = self.value(&format!("{name}-item"), items);
                    self.rule(
                        name,
                        &format!("\"[\" ws ({item} (\",\" ws {item})*)? ws \"]\""),
                    )
                }
                None => "array".to_owned(),
            },
            "object" => self.object(name, schema),
            _ => "value".to_owned(),
        }
    }

    /// Required properties in schema order, then each optional one, present or not, in
    /// schema order. With no properties declared, any object.
    fn object(&mut self, name: &str, schema: &Value) -> String {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return "object".to_owned();
        };
        if props.is_empty() {
            return self.rule(name, "\"{\" ws \"}\"");
        }
        let required = required(schema);
        let mut fields = Vec::new();
        for (i, (key, prop)) in props.iter().enumerate() {
            let value = self.value(&format!("{name}-{}", rule_name(key, i)), prop);
            let pair = format!(
                "{} ws \":\" ws {value}",
                literal(&Value::from(key.as_str()).to_string())
            );
            fields.push((required.contains(&key.as_str()), pair));
        }
        let (req, opt): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(r, _)| *r);
        let req: Vec<String> = req.into_iter().map(|(_, p)| p).collect();
        let opt: Vec<String> = opt.into_iter().map(|(_, p)| p).collect();
        let body = if !req.is_empty() {
            let mut body = req.join(" \",\" ws ");
            for pair in &opt {
                body.push_str(&format!(" (\",\" ws {pair})?"));
            }
            body
        } else {
            // All optional: the first one present starts the list, without a comma.
            let starts: Vec<String> = (0..opt.len())
                .map(|i| {
                    let mut s = opt[i].clone();
                    for pair in &opt[i + 1..] {
                        s.push_str(&format!(" (\",\" ws {pair})?"));
                    }
                    s
                })
                .collect();
            format!("({})?", starts.join(" | "))
        };
        self.rule(name, &format!("\"{{\" ws {body} ws \"}}\""))
    }
}

/// A GBNF string literal for `text`.
fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A rule-name piece for a property: lowercase letters, digits and dashes, made unique by
/// its position.
fn rule_name(key: &str, index: usize) -> String {
    let cleaned: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("p{index}-{}", cleaned.trim_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_answer_line_is_answer_and_a_value_of_the_schema() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "nights": {"type": "integer"},
                "note": {"type": ["string", "null"]}
            },
            "required": ["city", "nights", "note"]
        });
        let g = typed_line_grammar(&[], LineKind::AnswerOnly, &schema);
        assert!(
            g.starts_with("root ::= \"ANSWER \" answer-value \"\\n\""),
            "{g}"
        );
        assert!(
            g.contains("answer-value ::= \"{\" ws \"\\\"city\\\"\" ws \":\" ws string"),
            "{g}"
        );
        assert!(g.contains("\"\\\"nights\\\"\" ws \":\" ws integer"), "{g}");
        assert!(!g.contains("[^\\n]+"), "free text is not an answer: {g}");
    }

    #[test]
    fn an_answer_cannot_repeat_its_result_or_pile_up_numbers() {
        let numbers = vec!["452".to_owned(), "12.5".to_owned()];
        let g = line_grammar_with_numbers(&[], LineKind::AnswerOnly, Some(&numbers), Some("452"));
        // Before the result only the other numbers; after it, no digit at all.
        let before = g.lines().find(|l| l.starts_with("other-number")).unwrap();
        assert!(!before.contains("452"), "{g}");
        assert!(g.contains("answer-after ::= [^\\n0-9]*"), "{g}");
        assert_eq!(at_most("n", "g", 2), "[^\\n0-9]* (n g (n g )?)?");
    }
    use serde_json::json;

    fn spec(name: &str, parameters: Value) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters,
            strict: false,
            examples: Vec::new(),
        }
    }

    #[test]
    fn a_call_names_a_real_tool_and_follows_its_schema() {
        let tools = [
            spec(
                "calculator",
                json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
            ),
            spec(
                "clock",
                json!({"type": "object", "properties": {
                    "action": {"oneOf": [{"const": "now"}, {"const": "days_between"}]},
                    "time_zone": {"type": ["string", "null"]},
                    "days": {"type": "integer"}
                }, "required": ["action"]}),
            ),
        ];
        let g = line_grammar(&tools, LineKind::CallOrAnswer);
        assert!(
            g.starts_with("root ::= (\"CALL \" call | \"ANSWER \" [^\\n]+) \"\\n\"\n"),
            "{g}"
        );
        assert!(
            g.contains("call ::= \"calculator\" \" \" tool0-args | \"clock\" \" \" tool1-args\n"),
            "{g}"
        );
        assert!(
            g.contains(
                "tool0-args ::= \"{\" ws \"\\\"expression\\\"\" ws \":\" ws string ws \"}\"\n"
            ),
            "{g}"
        );
        assert!(
            g.contains("tool1-args-p0-action ::= \"\\\"now\\\"\" | \"\\\"days_between\\\"\"\n"),
            "{g}"
        );
        assert!(
            g.contains("tool1-args-p2-time-zone ::= string | null\n"),
            "{g}"
        );
        // Required properties first, then the optional ones (in key order: JSON objects
        // here keep their keys sorted).
        assert!(
            g.contains("tool1-args ::= \"{\" ws \"\\\"action\\\"\" ws \":\" ws tool1-args-p0-action (\",\" ws \"\\\"days\\\"\" ws \":\" ws integer)? (\",\" ws \"\\\"time_zone\\\"\" ws \":\" ws tool1-args-p2-time-zone)? ws \"}\"\n"),
            "{g}"
        );
    }

    #[test]
    fn objects_with_only_optional_properties_start_with_any_of_them() {
        let g = line_grammar(
            &[spec(
                "search",
                json!({"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}}),
            )],
            LineKind::CallOnly,
        );
        assert!(g.starts_with("root ::= \"CALL \" call \"\\n\"\n"), "{g}");
        assert!(
            g.contains("tool0-args ::= \"{\" ws (\"\\\"n\\\"\" ws \":\" ws integer (\",\" ws \"\\\"q\\\"\" ws \":\" ws string)? | \"\\\"q\\\"\" ws \":\" ws string)? ws \"}\"\n"),
            "{g}"
        );
    }

    #[test]
    fn no_tools_means_an_answer() {
        let g = line_grammar(&[], LineKind::CallOrAnswer);
        assert!(
            g.starts_with("root ::= \"ANSWER \" [^\\n]+ \"\\n\"\n"),
            "{g}"
        );
        assert!(!g.contains("call ::="));
    }

    #[test]
    fn after_a_failed_call_an_answer_states_no_number() {
        let tool = spec(
            "calc",
            json!({"type": "object", "properties": {"expression": {"type": "string"}}}),
        );
        let g = line_grammar(
            std::slice::from_ref(&tool),
            LineKind::CallOrAnswer.after_failure(),
        );
        assert!(
            g.starts_with("root ::= (\"CALL \" call | \"ANSWER \" [^\\n0-9]+) \"\\n\"\n"),
            "{g}"
        );
        let g = line_grammar(&[tool], LineKind::AnswerOnly.after_failure());
        assert!(
            g.starts_with("root ::= \"ANSWER \" [^\\n0-9]+ \"\\n\"\n"),
            "{g}"
        );
        assert_eq!(LineKind::CallOnly.after_failure(), LineKind::CallOnly);
    }

    #[test]
    fn arrays_nested_objects_and_unknown_schemas() {
        let g = line_grammar(
            &[spec(
                "batch",
                json!({"type": "object", "properties": {
                    "paths": {"type": "array", "items": {"type": "string"}},
                    "opts": {"type": "object", "properties": {"deep": {"type": "boolean"}}, "required": ["deep"]},
                    "extra": {}
                }, "required": ["paths", "opts", "extra"]}),
            )],
            LineKind::CallOnly,
        );
        assert!(
            g.contains("tool0-args-p2-paths ::= \"[\" ws (string (\",\" ws string)*)? ws \"]\"\n"),
            "{g}"
        );
        assert!(
            g.contains(
                "tool0-args-p1-opts ::= \"{\" ws \"\\\"deep\\\"\" ws \":\" ws boolean ws \"}\"\n"
            ),
            "{g}"
        );
        assert!(g.contains("\"\\\"extra\\\"\" ws \":\" ws value"), "{g}");
    }
}
