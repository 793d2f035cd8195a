//! Crash points for the durability tests: places in the run where a test process can make
//! itself die at once, as `kill -9` would (no destructors, no flushes).
//!
//! Compiled in only with the `crash-points` feature, which no release build enables; without
//! it, [`crash_point`] is an empty inline function. With it, the process aborts at the
//! `n`-th time the point named in `AGENT_CRASH_AT=<point>:<n>` (or `<point>`, for the first
//! time) is reached. The points: `model_response_arrived`, `model_response_journalled`,
//! `tool_intent`, `tool_outcome`, `step_committed`.

/// Aborts the process here if the crash tests asked for it (feature `crash-points` only).
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn crash_point(_point: &str) {}

/// Aborts the process here if the crash tests asked for it (feature `crash-points` only).
#[cfg(feature = "crash-points")]
pub fn crash_point(point: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static SEEN: AtomicU32 = AtomicU32::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("AGENT_CRASH_AT").ok()?;
        let (name, n) = match spec.split_once(':') {
            Some((name, n)) => (name.to_owned(), n.parse().ok()?),
            None => (spec, 1),
        };
        // An empty name would match the no-op points.
        (!name.is_empty()).then_some((name, n))
    });
    if let Some((name, n)) = target
        && name == point
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        std::process::abort();
    }
}
