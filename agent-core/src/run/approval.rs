//! The data of human approval: a pending call, a decision on it, and a paused run (the
//! transitions themselves are the state machine's, in `state.rs`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::state::RunState;

/// A human's decision on a tool call that needed approval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Approval {
    /// Run it as the model asked.
    Approve,
    /// Do not run it; the model reads this message as the call's (failed) result.
    Reject {
        /// Why, for the model.
        message: String,
    },
    /// Run it with these arguments instead (checked against the tool's schema first).
    Edit {
        /// The new arguments.
        args: Value,
    },
}

/// A tool call waiting for a human's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The call's id (decisions refer to it).
    pub call_id: String,
    /// The tool.
    pub name: String,
    /// The arguments as the model wrote them.
    pub arguments: String,
    /// What is wrong with the arguments, when they do not match the tool's schema (such a
    /// call cannot be approved as is, only edited or rejected).
    pub problem: Option<String>,
}

/// A run paused for human approval: the calls waiting and the state to resume from (it
/// serialises, so the decision can come from another process).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interruption {
    /// The calls waiting for a decision.
    pub pending: Vec<PendingApproval>,
    /// The run's state.
    pub state: RunState,
}
