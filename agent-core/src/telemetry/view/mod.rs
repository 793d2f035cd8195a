//! A trace file read back: the runs in it, each agent's turns split into model, tool and
//! framework time, tokens and cost per turn and per agent, retries and errors. The trace
//! page (`examples/trace_view.rs`) renders it as HTML ([`TraceView::to_html`]) or text
//! ([`TraceView::to_text`]). Reading never fails on what a newer writer may add: unknown
//! lines and attributes are skipped; only a line that is not JSON is an error.
//!
//! ```
//! use agent_core::telemetry::view::TraceView;
//! let file = concat!(
//!     r#"{"type":"trace_file","version":1}"#, "\n",
//!     r#"{"type":"span","id":2,"parent":1,"name":"chat","start_us":1000,"end_us":4000,"#,
//!     r#""attrs":{"agentic.turn":1,"gen_ai.usage.input_tokens":10,"gen_ai.usage.output_tokens":2}}"#, "\n",
//!     r#"{"type":"span","id":1,"parent":null,"name":"invoke_agent","start_us":0,"end_us":5000,"#,
//!     r#""attrs":{"gen_ai.agent.name":"helper"}}"#, "\n",
//! );
//! let view = TraceView::parse(file)?;
//! let run = &view.runs[0];
//! assert_eq!(run.name, "helper");
//! assert_eq!(run.turns[0].model_us, 3000);
//! assert_eq!(run.turns[0].framework_us, 2000);
//! # Ok::<(), agent_core::telemetry::view::TraceViewError>(())
//! ```

mod html;
mod text;

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A trace file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceViewError {
    /// A line is not JSON.
    #[error("line {line} of the trace file is not JSON: {reason}")]
    NotJson {
        /// The line's number, from 1.
        line: usize,
        /// What the JSON parser said.
        reason: String,
    },
    /// The file's version is newer than this reader.
    #[error("the trace file is version {0}; this reader knows version 1")]
    Version(u64),
}

/// The runs of a trace file, in the order they started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceView {
    /// Agent runs that no other run contains.
    pub runs: Vec<AgentRun>,
}

/// One agent's run (an `invoke_agent` span).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentRun {
    /// The agent's name.
    pub name: String,
    /// Its model (`gen_ai.request.model`), when the span names it.
    pub model: String,
    /// The run id, when the span names it.
    pub run_id: String,
    /// When it started (microseconds since the Unix epoch).
    pub start_us: u64,
    /// How long it took.
    pub duration_us: u64,
    /// Its turns, in order.
    pub turns: Vec<Turn>,
    /// Its error type, if the run failed.
    pub error: Option<String>,
    /// This agent's own model calls, added up (nested agents not included).
    pub own: Totals,
    /// Its own calls and those of every agent nested in it.
    pub total: Totals,
}

/// Tokens, cost and time, added up.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// US dollars.
    pub cost_usd: f64,
    /// Time in model calls.
    pub model_us: u64,
    /// Time in tool calls (overlapping calls counted once).
    pub tool_us: u64,
    /// The rest: what the framework itself added.
    pub framework_us: u64,
    /// Retried model requests.
    pub retries: u64,
    /// Failed model and tool calls.
    pub errors: u64,
}

impl Totals {
    fn add(&mut self, other: &Totals) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.model_us += other.model_us;
        self.tool_us += other.tool_us;
        self.framework_us += other.framework_us;
        self.retries += other.retries;
        self.errors += other.errors;
    }
}

/// One turn: a model call and the tool calls it asked for. Its time runs from its model
/// call's start (the run's start, for the first) to the next turn's (the run's end, for
/// the last), and is split into model, tool and framework time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Turn {
    /// Its number, from 1.
    pub number: u32,
    /// When it started.
    pub start_us: u64,
    /// How long it took.
    pub duration_us: u64,
    /// The model that answered.
    pub model: String,
    /// Time in the model call.
    pub model_us: u64,
    /// Time in tool calls (overlapping calls counted once).
    pub tool_us: u64,
    /// The rest of the turn: the framework's own time.
    pub framework_us: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// US dollars.
    pub cost_usd: f64,
    /// Retried requests of the model call.
    pub retries: u64,
    /// The model call's error type, if it failed.
    pub error: Option<String>,
    /// Its tool calls, in the order they started.
    pub tools: Vec<ToolCallView>,
}

/// One tool call of a turn.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ToolCallView {
    /// The tool.
    pub name: String,
    /// When it started.
    pub start_us: u64,
    /// How long it took.
    pub duration_us: u64,
    /// Its error type, if it failed.
    pub error: Option<String>,
    /// Agents it ran (an agent used as a tool).
    pub agents: Vec<AgentRun>,
}

#[derive(Debug, Default)]
struct RawSpan {
    parent: Option<u64>,
    name: String,
    start_us: u64,
    end_us: u64,
    attrs: Map<String, Value>,
}

impl RawSpan {
    fn str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(Value::as_str)
    }
    fn u64(&self, key: &str) -> u64 {
        self.attrs.get(key).and_then(Value::as_u64).unwrap_or(0)
    }
    fn f64(&self, key: &str) -> f64 {
        self.attrs.get(key).and_then(Value::as_f64).unwrap_or(0.0)
    }
    fn duration(&self) -> u64 {
        self.end_us.saturating_sub(self.start_us)
    }
    fn error(&self) -> Option<String> {
        self.str("error.type").map(str::to_owned)
    }
}

impl TraceView {
    /// Reads a trace file's text.
    pub fn parse(text: &str) -> Result<TraceView, TraceViewError> {
        let mut spans: HashMap<u64, RawSpan> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|e| TraceViewError::NotJson {
                line: i + 1,
                reason: e.to_string(),
            })?;
            match value.get("type").and_then(Value::as_str) {
                Some("trace_file") => {
                    let version = value.get("version").and_then(Value::as_u64).unwrap_or(1);
                    if version > super::TRACE_FILE_VERSION {
                        return Err(TraceViewError::Version(version));
                    }
                }
                Some("span") => {
                    let Some(id) = value.get("id").and_then(Value::as_u64) else {
                        continue;
                    };
                    let start_us = value.get("start_us").and_then(Value::as_u64).unwrap_or(0);
                    let end_us = value
                        .get("end_us")
                        .and_then(Value::as_u64)
                        .unwrap_or(start_us);
                    spans.insert(
                        id,
                        RawSpan {
                            parent: value.get("parent").and_then(Value::as_u64),
                            name: value
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                            start_us,
                            end_us: end_us.max(start_us),
                            attrs: value
                                .get("attrs")
                                .and_then(Value::as_object)
                                .cloned()
                                .unwrap_or_default(),
                        },
                    );
                }
                // Events are in the file for other readers; retries and errors are
                // counted from the spans' attributes.
                _ => {}
            }
        }
        Ok(Self::from_spans(&spans))
    }

    fn from_spans(spans: &HashMap<u64, RawSpan>) -> TraceView {
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        for (&id, span) in spans {
            if let Some(parent) = span.parent {
                children.entry(parent).or_default().push(id);
            }
        }
        for ids in children.values_mut() {
            ids.sort_by_key(|id| (spans[id].start_us, *id));
        }
        let tree = Tree {
            spans,
            children: &children,
        };
        // Outermost agent spans: no agent span above them.
        let mut roots: Vec<u64> = spans
            .iter()
            .filter(|(_, s)| s.name == "invoke_agent")
            .filter(|(id, _)| !tree.has_agent_above(**id))
            .map(|(&id, _)| id)
            .collect();
        roots.sort_by_key(|id| (spans[id].start_us, *id));
        TraceView {
            runs: roots.into_iter().map(|id| tree.agent(id)).collect(),
        }
    }

    /// Everything added up: every run, nested agents included.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for run in &self.runs {
            totals.add(&run.total);
        }
        totals
    }

    /// The trace as one self-contained HTML page (no script, no network).
    pub fn to_html(&self) -> String {
        html::render(self)
    }

    /// The trace as a plain-text summary, for a terminal.
    pub fn to_text(&self) -> String {
        text::render(self)
    }
}

struct Tree<'a> {
    spans: &'a HashMap<u64, RawSpan>,
    children: &'a HashMap<u64, Vec<u64>>,
}

impl Tree<'_> {
    fn kids(&self, id: u64) -> &[u64] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    fn has_agent_above(&self, id: u64) -> bool {
        let mut current = self.spans.get(&id).and_then(|s| s.parent);
        let mut hops = 0;
        while let Some(parent) = current {
            let Some(span) = self.spans.get(&parent) else {
                return false;
            };
            if span.name == "invoke_agent" {
                return true;
            }
            current = span.parent;
            hops += 1;
            if hops > 10_000 {
                return false; // a cycle in a corrupt file
            }
        }
        false
    }

    /// Agent spans below `id` that no other agent span below `id` contains.
    fn agents_below(&self, id: u64, out: &mut Vec<u64>, depth: usize) {
        if depth > 256 {
            return;
        }
        for &kid in self.kids(id) {
            if self.spans[&kid].name == "invoke_agent" {
                out.push(kid);
            } else {
                self.agents_below(kid, out, depth + 1);
            }
        }
    }

    fn agent(&self, id: u64) -> AgentRun {
        let span = &self.spans[&id];
        let mut chats = Vec::new();
        let mut tools = Vec::new();
        for &kid in self.kids(id) {
            match self.spans[&kid].name.as_str() {
                "chat" => chats.push(kid),
                "execute_tool" => tools.push(kid),
                _ => {}
            }
        }
        let end = span.end_us;
        let mut turns = Vec::new();
        for (i, &chat_id) in chats.iter().enumerate() {
            let chat = &self.spans[&chat_id];
            let number = match chat.u64("agentic.turn") {
                0 => i as u32 + 1,
                n => n as u32,
            };
            let start = if i == 0 { span.start_us } else { chat.start_us };
            let stop = chats
                .get(i + 1)
                .map_or(end, |next| self.spans[next].start_us)
                .max(start);
            let my_tools: Vec<u64> = tools
                .iter()
                .copied()
                .filter(|t| {
                    let tool = &self.spans[t];
                    match tool.u64("agentic.turn") {
                        0 => tool.start_us >= start && tool.start_us < stop,
                        n => n as u32 == number,
                    }
                })
                .collect();
            let tool_us = union_us(my_tools.iter().map(|t| {
                let s = &self.spans[t];
                (s.start_us, s.end_us)
            }));
            let duration_us = stop - start;
            let model_us = chat.duration();
            turns.push(Turn {
                number,
                start_us: start,
                duration_us,
                model: chat
                    .str("gen_ai.response.model")
                    .or(chat.str("gen_ai.request.model"))
                    .unwrap_or_default()
                    .to_owned(),
                model_us,
                tool_us,
                framework_us: duration_us.saturating_sub(model_us + tool_us),
                input_tokens: chat.u64("gen_ai.usage.input_tokens"),
                output_tokens: chat.u64("gen_ai.usage.output_tokens"),
                cost_usd: chat.f64("agentic.usage.cost_usd"),
                retries: chat.u64("agentic.retries"),
                error: chat.error(),
                tools: my_tools.iter().map(|&t| self.tool(t)).collect(),
            });
        }
        let mut own = Totals::default();
        for turn in &turns {
            own.add(&Totals {
                input_tokens: turn.input_tokens,
                output_tokens: turn.output_tokens,
                cost_usd: turn.cost_usd,
                model_us: turn.model_us,
                tool_us: turn.tool_us,
                framework_us: turn.framework_us,
                retries: turn.retries,
                errors: u64::from(turn.error.is_some())
                    + turn.tools.iter().filter(|t| t.error.is_some()).count() as u64,
            });
        }
        if turns.is_empty() {
            own.framework_us = span.duration();
        }
        let mut total = own;
        for turn in &turns {
            for tool in &turn.tools {
                for agent in &tool.agents {
                    let nested = agent.total;
                    total.input_tokens += nested.input_tokens;
                    total.output_tokens += nested.output_tokens;
                    total.cost_usd += nested.cost_usd;
                    total.retries += nested.retries;
                    total.errors += nested.errors;
                }
            }
        }
        AgentRun {
            name: span.str("gen_ai.agent.name").unwrap_or("agent").to_owned(),
            model: span
                .str("gen_ai.request.model")
                .unwrap_or_default()
                .to_owned(),
            run_id: span.str("agentic.run.id").unwrap_or_default().to_owned(),
            start_us: span.start_us,
            duration_us: span.duration(),
            turns,
            error: span.error(),
            own,
            total,
        }
    }

    fn tool(&self, id: u64) -> ToolCallView {
        let span = &self.spans[&id];
        let mut agents = Vec::new();
        self.agents_below(id, &mut agents, 0);
        ToolCallView {
            name: span.str("gen_ai.tool.name").unwrap_or("tool").to_owned(),
            start_us: span.start_us,
            duration_us: span.duration(),
            error: span.error(),
            agents: agents.into_iter().map(|a| self.agent(a)).collect(),
        }
    }
}

/// The length of the union of some intervals (parallel tool calls count once).
fn union_us(intervals: impl Iterator<Item = (u64, u64)>) -> u64 {
    let mut all: Vec<(u64, u64)> = intervals.collect();
    all.sort_unstable();
    let mut total = 0;
    let mut current: Option<(u64, u64)> = None;
    for (start, end) in all {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

/// Microseconds as milliseconds with one decimal.
pub(crate) fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

/// US dollars with enough digits for small calls.
pub(crate) fn usd(cost: f64) -> String {
    format!("${cost:.6}")
}

#[cfg(test)]
mod tests {
    use super::union_us;

    #[test]
    fn overlapping_tool_calls_count_once() {
        assert_eq!(union_us([(0, 10), (5, 15), (20, 25)].into_iter()), 20);
        assert_eq!(union_us(std::iter::empty()), 0);
    }
}
