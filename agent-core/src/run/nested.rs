//! Runs inside runs: what an agent used as a tool hands back to the run that called it.
//!
//! A nested run's usage (a tree: run → sub-agents → calls, price-free, so that it
//! serialises with the run and can be priced with any table), its events (relayed into the
//! outer stream, tagged with the agent's name and depth) and its approval pause (surfaced
//! as the outer run's pause, resumed as one). The driver lends each call of a tool that
//! nests runs a [`NestedLink`]; what comes back through it reaches the state machine as an
//! input, like everything else. Nothing here performs I/O or decides.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::approval::{Approval, Interruption};
use super::control::RunEvent;
use super::state::RunState;
use crate::budget::Prices;
use crate::message::Usage;

/// What one agent's run spent, and the runs of the agents it used as tools: a tree of
/// model calls (usage and the model that answered each), without prices, so it can be
/// priced with any table ([`cost_usd`](Self::cost_usd)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    /// The agent.
    pub agent: String,
    /// Tokens of each of its own model calls, in order.
    pub turn_usage: Vec<Usage>,
    /// The model that answered each of its own calls (beside `turn_usage`).
    #[serde(default)]
    pub turn_models: Vec<String>,
    /// The runs of the agents it used as tools, in the order they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_agents: Vec<AgentUsage>,
}

impl AgentUsage {
    /// Tokens of its own calls.
    pub fn own_usage(&self) -> Usage {
        self.turn_usage.iter().copied().sum()
    }

    /// Tokens of its own calls and of every sub-agent's, at any depth.
    pub fn usage(&self) -> Usage {
        self.own_usage() + self.sub_agents.iter().map(AgentUsage::usage).sum::<Usage>()
    }

    /// Model calls, its own and its sub-agents'.
    pub fn calls(&self) -> usize {
        self.turn_usage.len() + self.sub_agents.iter().map(AgentUsage::calls).sum::<usize>()
    }

    /// The cost of each of its own calls, priced at the model that answered it; `None` for
    /// a model without a price.
    pub fn call_costs(&self, prices: &Prices) -> Vec<Option<f64>> {
        self.turn_usage
            .iter()
            .enumerate()
            .map(|(i, usage)| {
                let model = self.turn_models.get(i).map_or("", String::as_str);
                prices.cost(model, usage)
            })
            .collect()
    }

    /// What the whole tree cost, in US dollars; `None` when any call's model has no price
    /// (the total is unknown, not the sum of the known part).
    pub fn cost_usd(&self, prices: &Prices) -> Option<f64> {
        let own: Option<f64> = self.call_costs(prices).into_iter().sum();
        let subs: Option<f64> = self.sub_agents.iter().map(|s| s.cost_usd(prices)).sum();
        Some(own? + subs?)
    }

    /// The tree as text, one line per run and per call, indented by depth:
    ///
    /// ```text
    /// triage: 3 calls, 1234 tokens, $0.0012
    ///   call 1 gpt-4o-mini: 400 in / 20 out, $0.0001
    ///   researcher: ...
    /// ```
    pub fn render(&self, prices: &Prices) -> String {
        let mut out = String::new();
        self.render_into(prices, 0, &mut out);
        out
    }

    fn render_into(&self, prices: &Prices, depth: usize, out: &mut String) {
        let pad = "  ".repeat(depth);
        let usage = self.usage();
        let calls = self.calls();
        out.push_str(&format!(
            "{pad}{}: {calls} call{}, {} tokens, {}\n",
            self.agent,
            if calls == 1 { "" } else { "s" },
            usage.total_tokens(),
            dollars(self.cost_usd(prices))
        ));
        for (i, (usage, cost)) in self
            .turn_usage
            .iter()
            .zip(self.call_costs(prices))
            .enumerate()
        {
            let model = self.turn_models.get(i).map_or("?", String::as_str);
            out.push_str(&format!(
                "{pad}  call {} {model}: {} in / {} out, {}\n",
                i + 1,
                usage.input_tokens,
                usage.output_tokens,
                dollars(cost)
            ));
        }
        for sub in &self.sub_agents {
            sub.render_into(prices, depth + 1, out);
        }
    }
}

fn dollars(cost: Option<f64>) -> String {
    cost.map_or_else(|| "cost unknown".to_owned(), |c| format!("${c:.6}"))
}

/// What an agent used as a tool reports to the calling run: its usage tree, and the
/// interruption when it paused for approval (then the call waits, as the outer run's own
/// approvals do).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubAgentRun {
    /// What the nested run spent (so far, when it paused).
    pub usage: AgentUsage,
    /// Set when the nested run paused for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Box<Interruption>>,
}

/// A nested run paused for approval, with the decisions that lift the pause: the call that
/// ran it runs again and resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NestedResume {
    /// The nested run's state.
    pub state: RunState,
    /// The decisions, by the nested run's own call ids.
    pub decisions: Vec<(String, Approval)>,
}

/// The link the driver lends to one call of a tool that nests runs (see
/// [`Tool::nests_runs`](crate::Tool::nests_runs)): where the nested run reports, where its
/// events go, and the paused run to resume, if any. Reach it from a tool with
/// [`NestedLink::of`].
#[derive(Debug, Default)]
pub struct NestedLink {
    report: Mutex<Option<SubAgentRun>>,
    relay: Option<EventRelay>,
    resume: Mutex<Option<NestedResume>>,
}

impl NestedLink {
    pub(crate) fn new(relay: Option<EventRelay>, resume: Option<NestedResume>) -> Self {
        NestedLink {
            report: Mutex::new(None),
            relay,
            resume: Mutex::new(resume),
        }
    }

    /// The link of a tool call, when the driver lent one.
    pub fn of(ctx: &crate::ToolContext) -> Option<&NestedLink> {
        ctx.nested.as_deref()?.downcast_ref()
    }

    /// Reports what the nested run spent, and its pause if it paused.
    pub fn report(&self, run: SubAgentRun) {
        if let Ok(mut slot) = self.report.lock() {
            *slot = Some(run);
        }
    }

    /// The paused run this call resumes, if any (taken: asked once).
    pub fn take_resume(&self) -> Option<NestedResume> {
        self.resume.lock().ok()?.take()
    }

    /// Where the nested run's events go, for an agent `agent` one level down.
    pub fn relay_for(&self, agent: &str) -> Option<EventRelay> {
        self.relay.as_ref().map(|r| EventRelay {
            agent: Arc::from(agent),
            sender: r.sender.clone(),
        })
    }

    pub(crate) fn take_report(&self) -> Option<SubAgentRun> {
        self.report.lock().ok()?.take()
    }
}

/// Carries a nested run's events to the run that called it, tagged with the nested agent's
/// name and depth ([`RunEvent::SubAgent`]).
#[derive(Clone, Debug)]
pub struct EventRelay {
    agent: Arc<str>,
    sender: futures::channel::mpsc::UnboundedSender<RunEvent>,
}

impl EventRelay {
    pub(crate) fn new(sender: futures::channel::mpsc::UnboundedSender<RunEvent>) -> Self {
        EventRelay {
            agent: Arc::from(""),
            sender,
        }
    }

    /// Sends one event of the nested run, tagged; an event already tagged (from a run one
    /// level deeper still) keeps its agent and goes one level deeper.
    pub fn send(&self, event: RunEvent) {
        let tagged = match event {
            RunEvent::SubAgent {
                agent,
                depth,
                event,
            } => RunEvent::SubAgent {
                agent,
                depth: depth + 1,
                event,
            },
            // The nested run's end is the call's result, reported by the calling run.
            RunEvent::Finished(_) | RunEvent::Failed(_) => return,
            event => RunEvent::SubAgent {
                agent: self.agent.to_string(),
                depth: 1,
                event: Box::new(event),
            },
        };
        let _ = self.sender.unbounded_send(tagged);
    }
}
