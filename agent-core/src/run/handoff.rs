//! Handoffs, as the driver sees them: a [`Roster`] of the agents a run may hand its
//! conversation to, by name, each with its model, tools and instructions.
//!
//! The state machine decides that a handoff happens (the first `transfer_to_<name>` call of
//! a turn, within [`RunLimits::max_handoffs`](crate::RunLimits::max_handoffs)) and records
//! the active agent by name; the driver looks the agent up here, runs the handoff's
//! callback and input filter, and reports the result. So a saved run resumes in any process
//! whose roster has the same agents.

use crate::message::Message;
use crate::model::ChatModel;
use crate::tool::ToolSet;

/// One agent of a [`Roster`], as a run needs it after a handoff.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    /// Its model.
    pub model: &'a dyn ChatModel,
    /// Its tools (its own transfer tools included).
    pub tools: &'a ToolSet,
    /// Its instructions (the system message after the handoff).
    pub instructions: Option<&'a str>,
}

impl std::fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("model", &self.model.model())
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

/// The agents a run may hand off to ([`Team`](crate::Team) is the standard one).
pub trait Roster: Send + Sync {
    /// The agent of this name, if the roster has it.
    fn member(&self, name: &str) -> Option<Member<'_>>;

    /// A handoff from `from` to `to` happens now: runs its callback, and returns the
    /// conversation (without the system message) the new agent sees when the handoff has
    /// an input filter (`None`: all of it, unchanged).
    fn hand_off(&self, from: &str, to: &str, conversation: &[Message]) -> Option<Vec<Message>>;
}
