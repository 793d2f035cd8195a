//! Stuck-loop detection: the same tool, with the same arguments, giving the same result
//! several times in a row. Pure bookkeeping over fingerprints; the state machine decides
//! what to tell the model and when to stop.
//!
//! The fingerprint is saved with the run, so its hash is defined here (FNV-1a, 64 bits, over
//! a fixed byte layout) rather than borrowed from the standard library, whose hasher may
//! change between Rust releases: a run saved by one build compares equal in the next.

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
        let fingerprint = fingerprint(result, args);
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

    /// The same count over a fingerprint recomputed for this call (a state saved by an older
    /// format, whose fingerprints were made another way).
    pub(crate) fn refingerprint(&mut self, result: &ToolResult, args: &str) {
        if let Some((_, times)) = self.0 {
            self.0 = Some((fingerprint(result, args), times));
        }
    }
}

/// FNV-1a over the tool name, the trimmed arguments, the content and the error flag, each
/// followed by `0xFF` (a byte UTF-8 never contains, so the fields cannot run into each other).
fn fingerprint(result: &ToolResult, args: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain(&[0xFF]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(result.name.as_bytes());
    feed(args.trim().as_bytes());
    feed(result.content.as_bytes());
    feed(&[u8::from(result.is_error)]);
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, content: &str) -> ToolResult {
        ToolResult {
            call_id: "c".into(),
            name: name.into(),
            content: content.into(),
            is_error: false,
        }
    }

    #[test]
    fn the_fingerprint_is_fixed_by_its_definition() {
        // Empty fields leave only the separators and the error flag to hash; a
        // change to the hash or the layout changes these numbers, and saved runs with them.
        assert_eq!(fingerprint(&result("", ""), ""), 0xa963_dc08_9f50_f619);
        assert_eq!(
            fingerprint(&result("add", "5"), r#"{"a":2,"b":3}"#),
            fingerprint(&result("add", "5"), "  {\"a\":2,\"b\":3}\n")
        );
        assert_ne!(
            fingerprint(&result("ab", "c"), ""),
            fingerprint(&result("a", "bc"), "")
        );
    }
}
