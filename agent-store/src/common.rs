//! Helpers every store shares: serialising records, the errors for damaged rows, number
//! conversions that saturate instead of failing, and whether a process of this machine is
//! alive. No I/O on a database of its own.

use agent_core::durable::{StoreError, StoreErrorKind};
use agent_core::{MemoryError, Message, check_history};

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    value: &T,
    what: &str,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            format!("{what} cannot be serialised: {e}"),
        )
    })
}

pub(crate) fn corrupt(run_id: &str, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("run `{run_id}` in the store is damaged: {what} cannot be read ({e})"),
    )
}

pub(crate) fn i64_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn usize_of(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

pub(crate) fn memory_error(e: StoreError) -> MemoryError {
    MemoryError {
        message: e.message.clone(),
        source: Some(Box::new(e)),
    }
}

/// Whether a process of this machine with this id exists.
pub(crate) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Refuses messages that would break a session's history (a call without its result).
pub(crate) fn joinable(session: &str, messages: &[Message]) -> Result<(), MemoryError> {
    check_history(messages).map_err(|e| {
        MemoryError::new(format!(
            "these messages cannot join session `{session}`: {e}"
        ))
    })
}
