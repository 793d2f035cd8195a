//! Stuck-loop detection: the same tool, with the same arguments, giving the same result
//! several times in a row. Pure bookkeeping over fingerprints; the state machine decides
//! what to tell the model and when to stop.

use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::message::ToolResult;

/// The fingerprint of the last call and how many times in a row it has repeated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RepeatTracker(Option<(u64, u32)>);

/// Whether a call repeats the previous one, and how often.
pub(crate) enum Repeat {
    Fresh,
    /// The limit was reached: tell the model.
    Warn(u32),
    /// The model went on anyway.
    Stuck(u32),
}

impl RepeatTracker {
    /// Records a call and its result; `limit` 0 turns detection off.
    pub(crate) fn observe(&mut self, result: &ToolResult, args: &str, limit: u32) -> Repeat {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&result.name, args.trim(), &result.content, result.is_error).hash(&mut hasher);
        let fingerprint = hasher.finish();
        let times = match self.0 {
            Some((last, times)) if last == fingerprint => times + 1,
            _ => 1,
        };
        self.0 = Some((fingerprint, times));
        if limit == 0 || times < limit {
            Repeat::Fresh
        } else if times == limit {
            Repeat::Warn(times)
        } else {
            Repeat::Stuck(times)
        }
    }
}
