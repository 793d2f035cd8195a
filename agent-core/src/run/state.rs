//! The run as a state machine. No I/O, no clocks, no randomness: the same inputs give the
//! same actions, which is what makes a run testable, resumable and serialisable.
//!
//! Every decision of a run is taken here, from inputs: what the model answered, each tool
//! call's outcome as it finishes, a human's approvals, and what the driver observed around
//! them (the caller cancelled, a hook said stop, a budget ran out). The state after each
//! input is a complete checkpoint: serialise it, restore it elsewhere, and the next input
//! gives the same action.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[path = "answer.rs"]
mod answer;

use super::approval::{Approval, Interruption, PendingApproval};
use super::nested::{AgentUsage, NestedResume, SubAgentRun};
use super::outcome::{AgentError, PartialRun, RunResult, StopReason};
use super::repeat::{Repeat, RepeatTracker};
use super::{ModelSettings, OnMaxTurns, RunLimits};
use crate::budget::{Exceeded, OnBudgetExceeded};
use crate::error::{ModelError, ToolError, ToolErrorKind};
use crate::message::{Message, ToolCall, ToolResult, Usage, check_history};
use crate::model::{ChatRequest, ChatResponse, FinishReason, ToolChoice};
use crate::tool::{ToolOutput, ToolSet};

/// The format version written into every serialised [`RunState`].
///
/// Version 2 fingerprints repeated calls with a hash of its own (version 1 used the standard
/// library's, which may change between Rust releases). A version 1 state is migrated when it
/// is read; a state of any other version is refused on resume rather than misread.
pub const STATE_VERSION: u32 = 2;

/// The message the wrap-up call adds to its request (not to the history).
const WRAP_UP_PROMPT: &str = "You have reached the limit of tool-using turns for this task. \
Do not call any more tools. Using what you have found so far, give your best final answer now, \
and say plainly what remains uncertain or unfinished.";

/// What the driver reports to the state machine: what happened, never what to do.
#[derive(Clone, Debug)]
pub enum Input {
    /// Start, or resume after a restore: "what should I do now?"
    Resume,
    /// The model answered.
    ModelResponse(ChatResponse),
    /// The model answered, and a check made on the answer objected (a hook's `after_model`
    /// said stop, or the call took a budget past its limit). The answer is recorded first,
    /// then the objection applies; a final answer over budget is kept.
    ModelResponseVetoed(ChatResponse, Veto),
    /// The model call failed (after the backend's retries).
    ModelFailed(ModelError),
    /// One tool call of the last [`Action::RunTools`] finished. Report each as it finishes,
    /// in any order; the results still reach the model in call order, once all are in.
    ToolFinished(ToolOutcome),
    /// A human's decisions on calls of the last [`Action::Paused`]. Calls without a decision
    /// stay pending.
    Approvals(Vec<(String, Approval)>),
    /// The caller cancelled the run.
    Cancelled,
    /// A hook stopped the run (before a model call, or around a tool call), for this reason.
    Stopped(String),
    /// A budget check failed: before a model call (with its request) or before a turn's tool
    /// calls run (with their count).
    OverBudget(BudgetOverrun),
    /// A resumed run found that this pending call was interrupted while it ran (a crash):
    /// it may or may not have taken effect, and its tool is not safe to run again blindly.
    /// With `ask_human` the call waits for a human's approval (approving runs it again);
    /// without, the model reads that its outcome is unknown.
    OutcomeUnknown {
        /// The call's id.
        call_id: String,
        /// Send it to a human instead of answering it.
        ask_human: bool,
    },
    /// A pending call ran an agent of its own ([`Tool::nests_runs`](crate::Tool::nests_runs)),
    /// which reports what it spent, or that it paused for approval (then the call waits for
    /// the decisions, which resume the nested run; its `ToolFinished` changes nothing).
    /// Comes before the call's `ToolFinished`.
    SubAgent {
        /// The call's id.
        call_id: String,
        /// What the nested run reports.
        run: Box<SubAgentRun>,
    },
    /// The handoff of the last [`Action::HandOff`] happened: `agent` is now the active
    /// agent, with these instructions (they replace the system message), and, when the
    /// handoff filters the history, the conversation the new agent sees from now on
    /// (without the system message).
    HandedOff {
        /// The agent now active.
        agent: String,
        /// Its instructions.
        instructions: Option<String>,
        /// The conversation after the handoff's input filter, if it has one.
        conversation: Option<Vec<Message>>,
    },
}

/// An objection to a model's answer, found before the machine saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "veto", content = "detail", rename_all = "snake_case")]
pub enum Veto {
    /// A hook said stop, for this reason.
    Stopped(String),
    /// The call took a budget past its limit.
    OverBudget(BudgetOverrun),
}

/// A budget limit that was broken, and what the budget says to do about it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetOverrun {
    /// Which limit, and by how much.
    pub exceeded: Exceeded,
    /// Fail, or wrap up with one last call without tools.
    pub on_exceeded: OnBudgetExceeded,
}

/// What the state machine asks the driver to do.
#[derive(Debug)]
pub enum Action {
    /// Check the budget for this request, then call the model with it.
    CallModel(ChatRequest),
    /// The wrap-up call: tools disabled, for the best answer so far. Checked against the
    /// budget like any call, unless a budget that ran out asked for it (then it may go over
    /// by this one call).
    WrapUp(ChatRequest),
    /// Check the budget for `run.len()` tool calls, then run them (already checked against
    /// their schemas) and report each outcome as it finishes with [`Input::ToolFinished`].
    /// `refused` are calls the checks answered already (unknown tool, invalid arguments), for
    /// the driver to report. When `run` is empty there is nothing to wait for: step with
    /// [`Input::Resume`].
    RunTools {
        /// The calls to run, in call order.
        run: Vec<ToolInvocation>,
        /// The calls the checks refused, with the results the model will read.
        refused: Vec<ToolResult>,
    },
    /// Other calls of this turn are still running: report the next one that finishes.
    AwaitTools,
    /// Some calls need a human's decision: the run pauses with this result (its
    /// `interruption` holds the calls and the state to resume), to continue with
    /// [`Input::Approvals`]. `refused` as in [`Action::RunTools`].
    Paused {
        /// The paused run.
        result: RunResult,
        /// The calls the checks refused in this turn.
        refused: Vec<ToolResult>,
    },
    /// The run is over.
    Finished(RunResult),
    /// The run failed.
    Failed(AgentError),
    /// A model call transferred the conversation to the agent `to`: switch to its model and
    /// tools, and report with [`Input::HandedOff`] (a state saved here hands off again when
    /// resumed).
    HandOff {
        /// The agent to hand off to.
        to: String,
    },
}

/// One checked tool call for the driver to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolInvocation {
    /// The call's id.
    pub call_id: String,
    /// The tool's name (it exists in the tool set).
    pub name: String,
    /// The arguments, valid against the tool's schema.
    pub args: Value,
}

/// The outcome of one [`ToolInvocation`].
#[derive(Clone, Debug, PartialEq)]
pub struct ToolOutcome {
    /// The call's id.
    pub call_id: String,
    /// What the tool returned.
    pub result: Result<ToolOutput, ToolError>,
    /// How long it ran.
    pub duration: std::time::Duration,
}

/// One slot per tool call of the latest assistant message: answered, or waiting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Slot {
    Answered {
        result: ToolResult,
    },
    Pending {
        invocation: ToolInvocation,
    },
    /// Waits for a human: the call as the model made it, its checked arguments when they
    /// were valid, and what is wrong with them when not (malformed calls fail closed: they
    /// go to the human, never to the tool).
    AwaitingApproval {
        call: ToolCall,
        args: Option<Value>,
        problem: Option<String>,
    },
    /// Ran an agent that paused for approval: waits for decisions on the nested run's
    /// calls (known to the human as `<this call's id>/<the nested call's id>`).
    AwaitingNested {
        invocation: ToolInvocation,
        interruption: Box<Interruption>,
    },
}

/// The slots of one turn, in call order, with an index by call id and a count of the open
/// ones, so that each outcome costs the same however many calls the turn made. The index
/// is derived from the list (rebuilt after a restore), so only the list is saved.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Slots {
    list: Vec<Slot>,
    #[serde(skip)]
    index: Option<SlotIndex>,
}

#[derive(Clone, Debug, Default)]
struct SlotIndex {
    /// Only for turns with more calls than a scan is worth.
    by_id: Option<HashMap<String, usize>>,
    open: usize,
}

/// Up to this many calls, finding one by scanning is cheaper than hashing.
const SCAN_LIMIT: usize = 8;

// The index is derived: equality and `Debug` look at the slots alone, so a restored state
// equals (and prints as) the one it was saved from.
impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.list.fmt(f)
    }
}

impl PartialEq for Slots {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Slots {
    fn new(list: Vec<Slot>) -> Self {
        Slots { list, index: None }
    }

    fn index(&mut self) -> &mut SlotIndex {
        let list = &self.list;
        self.index.get_or_insert_with(|| SlotIndex {
            by_id: (list.len() > SCAN_LIMIT).then(|| {
                list.iter()
                    .enumerate()
                    .map(|(i, slot)| (slot.call_id().to_owned(), i))
                    .collect()
            }),
            open: list.iter().filter(|s| s.is_open()).count(),
        })
    }

    fn find(&mut self, call_id: &str) -> Option<usize> {
        match &self.index().by_id {
            Some(by_id) => by_id.get(call_id).copied(),
            None => self.list.iter().position(|s| s.call_id() == call_id),
        }
    }

    /// How many calls are not answered yet.
    fn open(&mut self) -> usize {
        self.index().open
    }

    fn set(&mut self, i: usize, slot: Slot) {
        let (was, now) = (self.list[i].is_open(), slot.is_open());
        let index = self.index();
        index.open = index.open + usize::from(now) - usize::from(was);
        self.list[i] = slot;
    }
}

impl Slot {
    fn call_id(&self) -> &str {
        match self {
            Slot::Answered { result } => &result.call_id,
            Slot::Pending { invocation } => &invocation.call_id,
            Slot::AwaitingApproval { call, .. } => &call.id,
            Slot::AwaitingNested { invocation, .. } => &invocation.call_id,
        }
    }

    fn is_open(&self) -> bool {
        !matches!(self, Slot::Answered { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
enum Phase {
    /// Next: a model call with tools.
    CallModel,
    /// Next: the wrap-up call with tools disabled, because the turn limit was reached
    /// (`budget: false`) or a budget ran out.
    WrapUp {
        #[serde(default)]
        budget: bool,
    },
    /// The calls of the last model turn: run, waiting for a human, or answered.
    RunTools { slots: Slots },
    /// Over.
    Done,
}

/// The state of one run, between two inputs. Serialise it to pause a run; deserialise and
/// call [`step`](RunState::step) with [`Input::Resume`] to continue.
///
/// ```
/// use agent_core::{Action, Input, Message, ModelSettings, RunLimits, RunState, ToolSet};
/// let mut state = RunState::new(
///     "run_1",
///     vec![Message::system("Be brief.")],
///     vec![Message::user("Hi")],
///     ModelSettings::default(),
///     RunLimits::default(),
/// );
/// let tools = ToolSet::empty();
/// let Action::CallModel(request) = state.step(&tools, Input::Resume) else { unreachable!() };
/// assert_eq!(request.messages.len(), 2);
/// let saved = serde_json::to_string(&state).unwrap();
/// let restored: RunState = serde_json::from_str(&saved).unwrap();
/// assert_eq!(restored, state);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// Read through `SavedState`, so that reading a state migrates an older format.
#[serde(from = "SavedState")]
pub struct RunState {
    version: u32,
    run_id: String,
    /// The whole conversation: instructions and earlier history, then what this run added
    /// (from `new_from` on). Shared with the request of a model call in flight, so a turn
    /// does not copy the history; appending copies it only if someone still holds a request.
    messages: Arc<Vec<Message>>,
    /// Where this run's own messages begin.
    new_from: usize,
    settings: ModelSettings,
    limits: RunLimits,
    turns: u32,
    usage: Usage,
    turn_usage: Vec<Usage>,
    /// The model that answered each model call, in order.
    #[serde(default)]
    turn_models: Vec<String>,
    /// Consecutive failures per tool name.
    failures: BTreeMap<String, u32>,
    /// Fingerprint of the last tool call (tool, arguments, result) and how many times in a
    /// row it has repeated.
    #[serde(default)]
    last_call: RepeatTracker,
    phase: Phase,
    /// The typed answer the run asks for, and its attempts (see `answer.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output: Option<answer::AnswerState>,
    /// What the agents this run used as tools spent, in the order their runs ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sub_agents: Vec<AgentUsage>,
    /// Calls of this turn that resume a nested run paused for approval, by call id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    nested: BTreeMap<String, NestedResume>,
    /// The agent the conversation was handed to last (`None`: the one that started it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<String>,
    /// Handoffs so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    handoffs: u32,
    /// A handoff decided in the last turn, not done yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handing_off: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A [`RunState`] as saved, of any format version this build can read; the same fields
/// (the compiler checks that the two lists match, in `From` below).
#[derive(Deserialize)]
struct SavedState {
    version: u32,
    run_id: String,
    messages: Arc<Vec<Message>>,
    new_from: usize,
    settings: ModelSettings,
    limits: RunLimits,
    turns: u32,
    usage: Usage,
    turn_usage: Vec<Usage>,
    #[serde(default)]
    turn_models: Vec<String>,
    failures: BTreeMap<String, u32>,
    #[serde(default)]
    last_call: RepeatTracker,
    phase: Phase,
    #[serde(default)]
    output: Option<answer::AnswerState>,
    #[serde(default)]
    sub_agents: Vec<AgentUsage>,
    #[serde(default)]
    nested: BTreeMap<String, NestedResume>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    handoffs: u32,
    #[serde(default)]
    handing_off: Option<String>,
}

impl From<SavedState> for RunState {
    fn from(saved: SavedState) -> Self {
        let SavedState {
            version,
            run_id,
            messages,
            new_from,
            settings,
            limits,
            turns,
            usage,
            turn_usage,
            turn_models,
            failures,
            last_call,
            phase,
            output,
            sub_agents,
            nested,
            agent,
            handoffs,
            handing_off,
        } = saved;
        let mut state = RunState {
            version,
            run_id,
            messages,
            new_from,
            settings,
            limits,
            turns,
            usage,
            turn_usage,
            turn_models,
            failures,
            last_call,
            phase,
            output,
            sub_agents,
            nested,
            agent,
            handoffs,
            handing_off,
        };
        state.migrate();
        state
    }
}

impl RunState {
    /// A new run: `context` (instructions, earlier history) is sent but not returned as new;
    /// `input` (usually one user message) starts the run's own messages.
    pub fn new(
        run_id: impl Into<String>,
        context: Vec<Message>,
        input: Vec<Message>,
        settings: ModelSettings,
        limits: RunLimits,
    ) -> Self {
        let new_from = context.len();
        let mut messages = context;
        messages.extend(input);
        RunState {
            version: STATE_VERSION,
            run_id: run_id.into(),
            messages: Arc::new(messages),
            new_from,
            settings,
            limits,
            turns: 0,
            usage: Usage::default(),
            turn_usage: Vec::new(),
            turn_models: Vec::new(),
            failures: BTreeMap::new(),
            last_call: RepeatTracker::default(),
            phase: Phase::CallModel,
            output: None,
            sub_agents: Vec::new(),
            nested: BTreeMap::new(),
            agent: None,
            handoffs: 0,
            handing_off: None,
        }
    }

    /// Brings a state of an older format to this one. Version 1 differs only in how the last
    /// call's fingerprint was hashed: it is recomputed from the history (the last tool
    /// result and its call), keeping its count.
    fn migrate(&mut self) {
        if self.version != 1 {
            return;
        }
        let last_result = self.messages.iter().rev().find_map(|m| match m {
            Message::Tool(result) => Some(result),
            _ => None,
        });
        if let Some(result) = last_result {
            let args = self
                .messages
                .iter()
                .rev()
                .filter_map(Message::as_assistant)
                .flat_map(|a| &a.tool_calls)
                .find(|c| c.id == result.call_id)
                .map_or("", |c| c.arguments.as_str());
            self.last_call.refingerprint(result, args);
        }
        self.version = STATE_VERSION;
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Every message of the conversation so far: the context (instructions, earlier
    /// history), then what this run added.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Where this run's own messages begin in [`messages`](Self::messages).
    pub fn new_from(&self) -> usize {
        self.new_from
    }

    /// The state without its messages, as JSON: what a journal stores at each step, beside
    /// the messages it stores once each. [`from_control_json`](Self::from_control_json)
    /// puts the two back together.
    pub fn control_json(&mut self) -> Result<String, serde_json::Error> {
        let messages = std::mem::take(&mut self.messages);
        let json = serde_json::to_string(self);
        self.messages = messages;
        json
    }

    /// A state from its [`control_json`](Self::control_json) and its messages. Fails when
    /// the control state cannot be read or does not fit the messages.
    pub fn from_control_json(
        control: &str,
        messages: Vec<Message>,
    ) -> Result<RunState, serde_json::Error> {
        let mut state: RunState = serde_json::from_str(control)?;
        if state.new_from > messages.len() {
            return Err(serde::de::Error::custom(format!(
                "the run's own messages begin at {}, but only {} messages are stored",
                state.new_from,
                messages.len()
            )));
        }
        state.messages = Arc::new(messages);
        Ok(state)
    }

    /// The messages this run added so far.
    pub fn new_messages(&self) -> &[Message] {
        self.messages.get(self.new_from..).unwrap_or_default()
    }

    fn push(&mut self, message: Message) {
        Arc::make_mut(&mut self.messages).push(message);
    }

    /// Takes this run's messages out; the context (instructions, earlier history) stays,
    /// so a reopened run still sends it.
    fn take_new_messages(&mut self) -> Vec<Message> {
        let mut all = Arc::try_unwrap(std::mem::take(&mut self.messages))
            .unwrap_or_else(|shared| (*shared).clone());
        let new = all.split_off(self.new_from.min(all.len()));
        self.messages = Arc::new(all);
        new
    }

    /// The request options of every model call.
    pub fn settings(&self) -> &ModelSettings {
        &self.settings
    }

    /// The run's limits.
    pub fn limits(&self) -> &RunLimits {
        &self.limits
    }

    /// Model calls made so far.
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Tokens used so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Whether the next model call is the wrap-up call of a budget that ran out (the one
    /// call a budget does not refuse).
    pub(crate) fn is_budget_wrap_up(&self) -> bool {
        self.phase == (Phase::WrapUp { budget: true })
    }

    /// Whether the run is over (finished, failed or cancelled).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The one transition function: record what happened, decide what comes next.
    pub fn step(&mut self, tools: &ToolSet, input: Input) -> Action {
        if self.version != STATE_VERSION {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::InvalidState(format!(
                "state format version {} is not supported (expected {STATE_VERSION})",
                self.version
            )));
        }
        if self.phase == Phase::Done {
            return Action::Failed(AgentError::InvalidState("the run is already over".into()));
        }
        match input {
            Input::Resume => self.next_action(tools),
            Input::ModelResponse(response) => self.on_model_response(tools, response),
            Input::ModelResponseVetoed(response, veto) => {
                match (self.on_model_response(tools, response), veto) {
                    (Action::Failed(error), _) => Action::Failed(error),
                    // The answer is in the history; the hook's stop ends the run there.
                    (Action::Finished(result), Veto::Stopped(reason)) => {
                        Action::Failed(AgentError::Stopped {
                            reason,
                            partial: Box::new(result.into_partial()),
                        })
                    }
                    // A final answer is kept even if it went over the budget.
                    (Action::Finished(result), Veto::OverBudget(_)) => Action::Finished(result),
                    (_, Veto::Stopped(reason)) => self.on_stopped(reason),
                    (_, Veto::OverBudget(overrun)) => self.on_over_budget(tools, overrun),
                }
            }
            Input::ModelFailed(error) => {
                self.phase = Phase::Done;
                Action::Failed(AgentError::Model {
                    source: error,
                    partial: Box::new(self.take_partial()),
                })
            }
            Input::ToolFinished(outcome) => self.on_tool_finished(tools, outcome),
            Input::Approvals(decisions) => self.on_approvals(tools, decisions),
            Input::Cancelled => {
                self.close_open("the run was cancelled before this call finished");
                Action::Failed(AgentError::Cancelled {
                    partial: Box::new(self.take_partial()),
                })
            }
            Input::Stopped(reason) => self.on_stopped(reason),
            Input::OverBudget(overrun) => self.on_over_budget(tools, overrun),
            Input::OutcomeUnknown { call_id, ask_human } => {
                self.on_outcome_unknown(tools, &call_id, ask_human)
            }
            Input::SubAgent { call_id, run } => self.on_sub_agent(tools, &call_id, *run),
            Input::HandedOff {
                agent,
                instructions,
                conversation,
            } => self.on_handed_off(tools, agent, instructions, conversation),
        }
    }

    /// The agent the conversation was last handed to, if any (else the one that started
    /// the run is active).
    pub fn active_agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Handoffs made so far.
    pub fn handoffs(&self) -> u32 {
        self.handoffs
    }

    /// The new agent takes over: its instructions replace the system message, a filtered
    /// conversation replaces the history (what the filter kept of the earlier context stays
    /// context; the rest counts as this run's).
    fn on_handed_off(
        &mut self,
        tools: &ToolSet,
        agent: String,
        instructions: Option<String>,
        conversation: Option<Vec<Message>>,
    ) -> Action {
        if self.handing_off.take().is_none() {
            return Action::Failed(AgentError::InvalidState(
                "a handoff was reported while none was due".into(),
            ));
        }
        let all = Arc::make_mut(&mut self.messages);
        let had_system = matches!(all.first(), Some(Message::System { .. }));
        let skip = usize::from(had_system);
        let mut context_len = self.new_from.saturating_sub(skip);
        if let Some(conversation) = conversation {
            let kept = all[skip..]
                .iter()
                .zip(&conversation)
                .take(context_len)
                .take_while(|(a, b)| a == b)
                .count();
            context_len = kept;
            all.truncate(skip);
            all.extend(conversation);
        }
        if had_system {
            all.remove(0);
        }
        let system = usize::from(instructions.is_some());
        if let Some(instructions) = instructions {
            all.insert(0, Message::system(instructions));
        }
        self.new_from = system + context_len;
        self.agent = Some(agent);
        self.handoffs += 1;
        self.next_action(tools)
    }

    /// A nested run reported: its spending joins this run's (once, when it ended), or its
    /// pause becomes this call's.
    fn on_sub_agent(&mut self, tools: &ToolSet, call_id: &str, run: SubAgentRun) -> Action {
        let Phase::RunTools { slots } = &mut self.phase else {
            return self.next_action(tools);
        };
        let Some(i) = slots.find(call_id) else {
            return Action::AwaitTools;
        };
        let Slot::Pending { invocation } = &slots.list[i] else {
            return Action::AwaitTools;
        };
        match run.paused {
            // Spending of a paused run is counted when it ends (its state carries it).
            Some(interruption) => {
                let invocation = invocation.clone();
                slots.set(
                    i,
                    Slot::AwaitingNested {
                        invocation,
                        interruption,
                    },
                );
            }
            None => {
                self.usage += run.usage.usage();
                self.sub_agents.push(run.usage);
            }
        }
        // The call's own outcome follows.
        Action::AwaitTools
    }

    /// The nested runs to resume in this turn, by call id (for the driver to hand to the
    /// calls that resume them).
    pub(crate) fn nested_resumes(&self) -> &BTreeMap<String, NestedResume> {
        &self.nested
    }

    /// A pending call was interrupted while it ran: answer it as unknown, or hand it to a
    /// human. A call that is not pending is left as it is.
    fn on_outcome_unknown(&mut self, tools: &ToolSet, call_id: &str, ask_human: bool) -> Action {
        let Phase::RunTools { slots } = &mut self.phase else {
            return self.next_action(tools);
        };
        if let Some(i) = slots.find(call_id)
            && let Slot::Pending { invocation } = &slots.list[i]
        {
            let call = ToolCall::new(&invocation.call_id, &invocation.name, &invocation.args);
            let next = if ask_human {
                Slot::AwaitingApproval {
                    call,
                    args: Some(invocation.args.clone()),
                    problem: Some(
                        "the run was interrupted while this call was running, so it may or may \
                         not have taken effect; approve only if running it again is safe"
                            .into(),
                    ),
                }
            } else {
                Slot::Answered {
                    result: ToolResult::error(
                        &call,
                        format!(
                            "Error: the outcome of this call is unknown: the run was interrupted \
                             while `{}` was running, and it was not run again because it may \
                             have side effects. Check whether it took effect before calling it \
                             again.",
                            invocation.name
                        ),
                    ),
                }
            };
            slots.set(i, next);
        }
        self.next_action(tools)
    }

    /// Ends the run because a hook said so: no call is left unanswered.
    fn on_stopped(&mut self, reason: String) -> Action {
        self.close_open(&format!(
            "the run was stopped before this call finished ({reason})"
        ));
        Action::Failed(AgentError::Stopped {
            reason,
            partial: Box::new(self.take_partial()),
        })
    }

    /// A budget ran out: fail, or make the next model call the wrap-up call (open calls are
    /// answered with why they were not run). The wrap-up call itself is never refused.
    fn on_over_budget(&mut self, tools: &ToolSet, overrun: BudgetOverrun) -> Action {
        // The budget's own wrap-up call goes ahead; the turn limit's is refused like any
        // other call (a cap binds it too).
        if self.phase == (Phase::WrapUp { budget: true }) {
            return self.next_action(tools);
        }
        let kind = overrun.exceeded.kind;
        match overrun.on_exceeded {
            OnBudgetExceeded::Fail => {
                self.close_open(&format!("the {kind} budget was exceeded"));
                Action::Failed(AgentError::BudgetExceeded {
                    kind,
                    limit: overrun.exceeded.limit,
                    used: overrun.exceeded.used,
                    partial: Box::new(self.take_partial()),
                })
            }
            OnBudgetExceeded::WrapUp => {
                self.close_open(&format!(
                    "the {kind} budget was exceeded, so this call was not run"
                ));
                self.phase = Phase::WrapUp { budget: true };
                self.next_action(tools)
            }
        }
    }

    /// Answers every call still open with an error saying why, records the turn's results
    /// in call order, and ends the run (the caller may set another phase after).
    fn close_open(&mut self, why: &str) {
        if let Phase::RunTools { slots } = std::mem::replace(&mut self.phase, Phase::Done) {
            for slot in slots.list {
                let result = match slot {
                    Slot::Answered { result } => result,
                    Slot::Pending { invocation } => ToolResult {
                        call_id: invocation.call_id,
                        name: invocation.name,
                        content: format!("Error: {why}."),
                        is_error: true,
                    },
                    Slot::AwaitingApproval { call, .. } => {
                        ToolResult::error(&call, format!("Error: {why}."))
                    }
                    Slot::AwaitingNested { invocation, .. } => ToolResult {
                        call_id: invocation.call_id,
                        name: invocation.name,
                        content: format!("Error: {why}."),
                        is_error: true,
                    },
                };
                self.push(Message::Tool(result));
            }
        }
    }

    /// The action for the current phase.
    fn next_action(&mut self, tools: &ToolSet) -> Action {
        if let (Phase::CallModel, Some(to)) = (&self.phase, &self.handing_off) {
            return Action::HandOff { to: to.clone() };
        }
        match &mut self.phase {
            Phase::CallModel => self.model_request(tools, false),
            Phase::WrapUp { .. } => self.model_request(tools, true),
            Phase::RunTools { slots } => {
                if slots.open() == 0 {
                    self.finish_turn(tools)
                } else {
                    self.tool_action(Vec::new())
                }
            }
            Phase::Done => {
                Action::Failed(AgentError::InvalidState("the run is already over".into()))
            }
        }
    }

    /// While a turn's calls are open: pause for the calls that wait for a human, else run
    /// the pending ones.
    fn tool_action(&self, refused: Vec<ToolResult>) -> Action {
        let Phase::RunTools { slots } = &self.phase else {
            return Action::Failed(AgentError::InvalidState("no tool calls are open".into()));
        };
        let waiting: Vec<PendingApproval> = slots
            .list
            .iter()
            .flat_map(|s| match s {
                Slot::AwaitingApproval { call, problem, .. } => vec![PendingApproval {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    problem: problem.clone(),
                }],
                // A nested run's calls, under a path that names the call that ran it.
                Slot::AwaitingNested {
                    invocation,
                    interruption,
                } => interruption
                    .pending
                    .iter()
                    .map(|p| PendingApproval {
                        call_id: format!("{}/{}", invocation.call_id, p.call_id),
                        ..p.clone()
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
        if !waiting.is_empty() {
            return Action::Paused {
                result: self.paused_result(waiting),
                refused,
            };
        }
        let run = slots
            .list
            .iter()
            .filter_map(|s| match s {
                Slot::Pending { invocation } => Some(invocation.clone()),
                _ => None,
            })
            .collect();
        Action::RunTools { run, refused }
    }

    fn model_request(&mut self, tools: &ToolSet, wrap_up: bool) -> Action {
        if let Err(e) = check_history(&self.messages) {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::History(e));
        }
        let messages = if wrap_up {
            // The wrap-up prompt goes to the model, not into the history.
            let mut with_prompt = Vec::with_capacity(self.messages.len() + 1);
            with_prompt.extend_from_slice(&self.messages);
            with_prompt.push(Message::user(WRAP_UP_PROMPT));
            Arc::new(with_prompt)
        } else {
            Arc::clone(&self.messages)
        };
        let s = &self.settings;
        let mut request = ChatRequest {
            messages,
            tools: tools.specs().clone(),
            tool_choice: if wrap_up {
                ToolChoice::None
            } else {
                s.tool_choice.clone()
            },
            temperature: s.temperature,
            max_output_tokens: s.max_output_tokens,
            stop: s.stop.clone(),
            response_format: s.response_format.clone(),
            extra: s.extra.clone(),
        };
        if let Some(output) = &self.output {
            output.shape(&mut request, wrap_up);
        }
        if wrap_up {
            Action::WrapUp(request)
        } else {
            Action::CallModel(request)
        }
    }

    fn on_model_response(&mut self, tools: &ToolSet, response: ChatResponse) -> Action {
        let (wrap_up, budget) = match self.phase {
            Phase::CallModel => (false, false),
            Phase::WrapUp { budget } => (true, budget),
            _ => {
                return Action::Failed(AgentError::InvalidState(
                    "a model response arrived while no model call was pending".into(),
                ));
            }
        };
        self.turns += 1;
        self.usage += response.usage;
        self.turn_usage.push(response.usage);
        self.turn_models
            .push(response.model.clone().unwrap_or_default());
        let mut message = response.message;
        let stop_reason = if budget {
            StopReason::BudgetExhausted
        } else if wrap_up {
            StopReason::MaxTurns
        } else {
            match response.finish_reason {
                FinishReason::Length => StopReason::OutputLimit,
                FinishReason::ContentFilter => StopReason::ContentFilter,
                _ => StopReason::Completed,
            }
        };
        if self.output.is_some() {
            match self.answer_turn(tools, message, wrap_up, stop_reason) {
                Ok(action) => return action,
                Err(ordinary) => message = *ordinary,
            }
        }

        if wrap_up || message.tool_calls.is_empty() {
            // A final answer. The wrap-up call had tools disabled; calls it made anyway are
            // dropped so the history stays valid.
            message.tool_calls.clear();
            let text = message.content.clone();
            self.push(Message::Assistant(message));
            self.phase = Phase::Done;
            return Action::Finished(self.take_result(text, stop_reason));
        }

        // Refused before any bookkeeping, so a turn of a hundred thousand calls costs no
        // more than reading it.
        let limit = self.limits.max_tool_calls_per_turn;
        if message.tool_calls.len() > limit as usize {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::TooManyToolCalls {
                calls: message.tool_calls.len(),
                limit,
                partial: Box::new(self.take_partial()),
            });
        }

        ensure_unique_ids(&mut message.tool_calls, self.turns);
        // Transfers: the first valid one of the turn wins; past the limit, the run ends.
        let transfers = message
            .tool_calls
            .iter()
            .filter(|c| tools.get(&c.name).and_then(|t| t.hands_off_to()).is_some())
            .count();
        if transfers > 0 && self.handoffs >= self.limits.max_handoffs {
            let limit = self.limits.max_handoffs;
            let why = format!(
                "the run reached its limit of {limit} handoffs (RunLimits::max_handoffs), so \
                 this call was not run"
            );
            let slots = message
                .tool_calls
                .iter()
                .map(|call| Slot::Answered {
                    result: ToolResult::error(call, format!("Error: {why}.")),
                })
                .collect();
            self.push(Message::Assistant(message));
            self.phase = Phase::RunTools {
                slots: Slots::new(slots),
            };
            self.close_open(&why);
            return Action::Failed(AgentError::HandoffLimit {
                limit,
                partial: Box::new(self.take_partial()),
            });
        }
        let mut refused = Vec::new();
        let slots: Vec<Slot> = message
            .tool_calls
            .iter()
            .map(|call| {
                // A typed answer given beside other calls is answered by the machine.
                if let Some(result) = self.pending_answer_result(call) {
                    return Slot::Answered { result };
                }
                if let Some(to) = tools.get(&call.name).and_then(|t| t.hands_off_to()) {
                    let result = match (&self.handing_off, tools.check_call(call)) {
                        (_, Err(error)) => error_result(call, &error),
                        (Some(first), Ok(_)) => ToolResult::error(
                            call,
                            format!(
                                "Error: not transferred: this turn already transferred the \
                                 conversation to `{first}`, and only the first transfer of a \
                                 turn applies."
                            ),
                        ),
                        (None, Ok(_)) => {
                            self.handing_off = Some(to.to_owned());
                            ToolResult::ok(call, format!("Transferred to `{to}`."))
                        }
                    };
                    return Slot::Answered { result };
                }
                let checked = tools.check_call(call);
                if tools.needs_approval(&call.name, checked.as_ref().ok()) {
                    let (args, problem) = match checked {
                        Ok(args) => (Some(args), None),
                        Err(error) => (None, Some(error.message)),
                    };
                    return Slot::AwaitingApproval {
                        call: call.clone(),
                        args,
                        problem,
                    };
                }
                match checked {
                    Ok(args) => Slot::Pending {
                        invocation: ToolInvocation {
                            call_id: call.id.clone(),
                            name: call.name.clone(),
                            args,
                        },
                    },
                    Err(error) => {
                        let result = error_result(call, &error);
                        refused.push(result.clone());
                        Slot::Answered { result }
                    }
                }
            })
            .collect();
        self.push(Message::Assistant(message));
        let mut slots = Slots::new(slots);
        let open = slots.open();
        self.phase = Phase::RunTools { slots };
        if open == 0 && refused.is_empty() {
            return self.finish_turn(tools);
        }
        self.tool_action(refused)
    }

    fn on_tool_finished(&mut self, tools: &ToolSet, outcome: ToolOutcome) -> Action {
        let cap = self.limits.max_tool_result_bytes;
        let Phase::RunTools { slots } = &mut self.phase else {
            return Action::Failed(AgentError::InvalidState(
                "a tool outcome arrived while no tool call was pending".into(),
            ));
        };
        // An outcome for a call that is not pending (unknown, or reported twice) changes
        // nothing.
        if let Some(i) = slots.find(&outcome.call_id)
            && let Slot::Pending { invocation } = &slots.list[i]
        {
            let call = ToolCall::raw(outcome.call_id, invocation.name.clone(), String::new());
            let mut result = match outcome.result {
                Ok(output) => ToolResult::ok(&call, output.into_content()),
                Err(error) => error_result(&call, &error),
            };
            result.content = cap_tool_result(result.content, cap);
            slots.set(i, Slot::Answered { result });
        }
        if slots.open() == 0 {
            return self.finish_turn(tools);
        }
        Action::AwaitTools
    }

    /// Every call of the turn is answered: the results go into the history in call order,
    /// then the limits decide what comes next.
    fn finish_turn(&mut self, tools: &ToolSet) -> Action {
        let Phase::RunTools { slots } = std::mem::replace(&mut self.phase, Phase::CallModel) else {
            return Action::Failed(AgentError::InvalidState(
                "tool results arrived while no tool call was pending".into(),
            ));
        };
        self.nested.clear();
        let mut over_limit: Option<(String, u32, String)> = None;
        let mut stuck: Option<(String, u32)> = None;
        let mut results = Vec::with_capacity(slots.list.len());
        // The turn's calls, in the same order as the slots (the turn's message is the last).
        let calls: &[ToolCall] = self
            .messages
            .last()
            .and_then(Message::as_assistant)
            .map_or(&[], |a| &a.tool_calls);
        for (n, slot) in slots.list.into_iter().enumerate() {
            let mut result = match slot {
                Slot::Answered { result } => result,
                Slot::AwaitingApproval { call, .. } => ToolResult::error(
                    &call,
                    "Error: this call was never approved, so it was not run.",
                ),
                Slot::AwaitingNested { invocation, .. } => ToolResult {
                    call_id: invocation.call_id,
                    name: invocation.name,
                    content: "Error: calls of this agent were never approved, so it did not \
                              finish."
                        .into(),
                    is_error: true,
                },
                Slot::Pending { invocation } => {
                    let call = ToolCall::raw(invocation.call_id, invocation.name, String::new());
                    error_result(
                        &call,
                        &ToolError::new(
                            ToolErrorKind::Failed,
                            format!("`{}` returned no result.", call.name),
                        ),
                    )
                }
            };
            let count = self.failures.entry(result.name.clone()).or_insert(0);
            if result.is_error {
                *count += 1;
                if *count >= self.limits.max_consecutive_tool_failures && over_limit.is_none() {
                    over_limit = Some((result.name.clone(), *count, result.content.clone()));
                }
            } else {
                *count = 0;
            }
            let args = calls
                .get(n)
                .filter(|c| c.id == result.call_id)
                .map_or("", |c| c.arguments.as_str());
            match self
                .last_call
                .observe(&result, args, self.limits.max_identical_calls)
            {
                Repeat::Fresh => {}
                Repeat::Warn(times) => result.content.push_str(&format!(
                    "\n\nNote: `{}` has now been called {times} times in a row with the same \
                     arguments and gave the same result each time. Calling it again will not \
                     change the result: use it, or try something different.",
                    result.name
                )),
                Repeat::Stuck(times) => {
                    if stuck.is_none() {
                        stuck = Some((result.name.clone(), times));
                    }
                }
            }
            results.push(Message::Tool(result));
        }
        Arc::make_mut(&mut self.messages).extend(results);
        if let Some((tool, repeats)) = stuck {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::StuckLoop {
                tool,
                repeats,
                partial: Box::new(self.take_partial()),
            });
        }
        if let Some((tool, failures, last_error)) = over_limit {
            self.phase = Phase::Done;
            return Action::Failed(AgentError::ToolFailureLimit {
                tool,
                failures,
                last_error,
                partial: Box::new(self.take_partial()),
            });
        }
        // A typed answer given beside the turn's other calls ends the run now, even on the
        // last turn.
        if let Some(action) = self.take_pending_answer(tools) {
            return action;
        }
        if self.turns >= self.limits.max_turns {
            match self.limits.on_max_turns {
                OnMaxTurns::WrapUp => self.phase = Phase::WrapUp { budget: false },
                OnMaxTurns::Fail => {
                    self.phase = Phase::Done;
                    return Action::Failed(AgentError::MaxTurns {
                        max_turns: self.limits.max_turns,
                        partial: Box::new(self.take_partial()),
                    });
                }
            }
        }
        self.next_action(tools)
    }

    fn on_approvals(&mut self, tools: &ToolSet, decisions: Vec<(String, Approval)>) -> Action {
        let Phase::RunTools { slots } = &mut self.phase else {
            return Action::Failed(AgentError::InvalidState(
                "approvals arrived while no call was waiting for one".into(),
            ));
        };
        let mut nested: BTreeMap<usize, Vec<(String, Approval)>> = BTreeMap::new();
        for (call_id, decision) in decisions {
            let Some(i) = slots.find(&call_id) else {
                // `<call id>/<nested call id>`: a decision for a nested run's call.
                let owner = slots.list.iter().position(|s| {
                    matches!(s, Slot::AwaitingNested { .. })
                        && call_id
                            .strip_prefix(s.call_id())
                            .is_some_and(|rest| rest.starts_with('/'))
                });
                if let Some(i) = owner {
                    let inner = call_id[slots.list[i].call_id().len() + 1..].to_owned();
                    nested.entry(i).or_default().push((inner, decision));
                }
                continue;
            };
            let Slot::AwaitingApproval {
                call,
                args,
                problem,
            } = &mut slots.list[i]
            else {
                continue;
            };
            let invocation = |args: Value| Slot::Pending {
                invocation: ToolInvocation {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    args,
                },
            };
            let next = match decision {
                Approval::Approve => match (args.take(), problem.take()) {
                    (Some(args), _) => invocation(args),
                    (None, problem) => Slot::Answered {
                        result: ToolResult::error(
                            call,
                            format!(
                                "Error: the arguments were invalid, so the call was not run: {}",
                                problem.unwrap_or_default()
                            ),
                        ),
                    },
                },
                Approval::Reject { message } => Slot::Answered {
                    result: ToolResult::error(
                        call,
                        format!("Error: the user rejected this call: {message}"),
                    ),
                },
                Approval::Edit { args } => {
                    let edited = ToolCall::new(call.id.clone(), call.name.clone(), &args);
                    match tools.check_call(&edited) {
                        Ok(args) => invocation(args),
                        Err(error) => Slot::Answered {
                            result: error_result(call, &error),
                        },
                    }
                }
            };
            slots.set(i, next);
        }
        // A nested run with decisions runs again: the call resumes it with them.
        for (i, decisions) in nested {
            if let Slot::AwaitingNested {
                invocation,
                interruption,
            } = &slots.list[i]
            {
                let resume = NestedResume {
                    state: interruption.state.clone(),
                    decisions,
                };
                let invocation = invocation.clone();
                self.nested.insert(invocation.call_id.clone(), resume);
                slots.set(i, Slot::Pending { invocation });
            }
        }
        self.next_action(tools)
    }

    /// Reopens a finished run to send the model feedback on its answer (an output
    /// guardrail's retry): the answer stays in the history, the feedback follows as a user
    /// message, and the next action is a model call.
    pub(crate) fn reopen(&mut self, result: RunResult, feedback: &str) {
        let mut all = Arc::try_unwrap(std::mem::take(&mut self.messages))
            .unwrap_or_else(|shared| (*shared).clone());
        all.truncate(self.new_from);
        all.extend(result.new_messages);
        all.push(Message::user(feedback));
        self.messages = Arc::new(all);
        self.turn_usage = result.turn_usage;
        self.turn_models = result.turn_models;
        self.sub_agents = result.sub_agents;
        self.phase = Phase::CallModel;
    }

    /// The result of a run paused for approval: what it did so far, the calls waiting, and
    /// the state to resume from (which this one stays, too).
    fn paused_result(&self, pending: Vec<PendingApproval>) -> RunResult {
        RunResult {
            run_id: self.run_id.clone(),
            text: String::new(),
            new_messages: self.new_messages().to_vec(),
            usage: self.usage,
            turn_usage: self.turn_usage.clone(),
            turn_models: self.turn_models.clone(),
            turns: self.turns,
            stop_reason: StopReason::AwaitingApproval,
            output: None,
            sub_agents: self.sub_agents.clone(),
            interruption: Some(Box::new(Interruption {
                pending,
                state: self.clone(),
            })),
        }
    }

    fn take_partial(&mut self) -> PartialRun {
        PartialRun {
            run_id: self.run_id.clone(),
            new_messages: self.take_new_messages(),
            usage: self.usage,
            turns: self.turns,
        }
    }

    fn take_result(&mut self, text: String, stop_reason: StopReason) -> RunResult {
        RunResult {
            run_id: self.run_id.clone(),
            text,
            new_messages: self.take_new_messages(),
            usage: self.usage,
            turn_usage: std::mem::take(&mut self.turn_usage),
            turn_models: std::mem::take(&mut self.turn_models),
            turns: self.turns,
            stop_reason,
            output: None,
            sub_agents: std::mem::take(&mut self.sub_agents),
            interruption: None,
        }
    }
}

/// The result message for a failed call: says it is an error and what to do about it.
fn error_result(call: &ToolCall, error: &ToolError) -> ToolResult {
    ToolResult::error(call, format!("Error: {}", error.message))
}

/// Cuts a tool result to at most `limit` bytes (on a character boundary) and says how much
/// was cut, so the model knows it did not see everything.
pub(crate) fn cap_tool_result(mut content: String, limit: usize) -> String {
    if content.len() <= limit || already_capped(&content, limit) {
        return content;
    }
    let mut end = limit;
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    let cut = content.len() - end;
    content.truncate(end);
    content.push_str(&format!(
        "\n\n[cut: {cut} more bytes of this result were not shown (results are limited to \
         {limit} bytes)]"
    ));
    content
}

/// Whether `content` is this function's own output for `limit` (a journal stores results
/// capped, and a resumed run caps them again): capping twice must change nothing.
fn already_capped(content: &str, limit: usize) -> bool {
    let tail = format!(
        " more bytes of this result were not shown (results are limited to {limit} bytes)]"
    );
    content.ends_with(&tail)
        && content
            .rfind("\n\n[cut: ")
            .is_some_and(|at| at <= limit && at + 3 >= limit)
}

/// Some models send empty or repeated call ids; results are paired by id, so every call of a
/// turn gets a unique, non-empty one. Linear in the number of calls.
fn ensure_unique_ids(calls: &mut [ToolCall], turn: u32) {
    let clashes: Vec<usize> = if calls.len() <= SCAN_LIMIT {
        (0..calls.len())
            .filter(|&i| calls[i].id.is_empty() || calls[..i].iter().any(|c| c.id == calls[i].id))
            .collect()
    } else {
        let mut seen: HashSet<&str> = HashSet::with_capacity(calls.len());
        calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.id.is_empty() || !seen.insert(c.id.as_str()))
            .map(|(i, _)| i)
            .collect()
    };
    if clashes.is_empty() {
        return;
    }
    let mut taken: HashSet<String> = calls.iter().map(|c| c.id.clone()).collect();
    for i in clashes {
        let mut n = i;
        loop {
            let id = format!("call_{turn}_{n}");
            if taken.insert(id.clone()) {
                calls[i].id = id;
                break;
            }
            n += calls.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_result_is_cut_on_a_character_boundary_and_says_how_much() {
        let text = "é".repeat(10); // 20 bytes
        let cut = cap_tool_result(text.clone(), 5);
        assert!(cut.starts_with("éé"), "{cut}");
        assert!(!cut.starts_with("ééé"), "{cut}");
        assert!(cut.contains("16 more bytes"), "{cut}");
        assert_eq!(cap_tool_result(text.clone(), 20), text);
        assert_eq!(
            cap_tool_result(cut.clone(), 5),
            cut,
            "capping twice changes nothing"
        );
        let big = "x".repeat(1000);
        let once = cap_tool_result(big, 100);
        assert_eq!(cap_tool_result(once.clone(), 100), once);
    }

    #[test]
    fn repeated_and_empty_ids_become_unique() {
        let mut calls = vec![
            ToolCall::raw("a", "t", "{}"),
            ToolCall::raw("a", "t", "{}"),
            ToolCall::raw("", "t", "{}"),
            ToolCall::raw("call_1_1", "t", "{}"),
        ];
        ensure_unique_ids(&mut calls, 1);
        let ids: HashSet<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), 4);
        assert!(ids.iter().all(|id| !id.is_empty()));
        assert_eq!(calls[0].id, "a");
        assert_eq!(calls[3].id, "call_1_1");
    }
}
