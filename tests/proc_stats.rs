//! This process's CPU time and peak memory, for the benchmark programs: `getrusage`, which
//! every Unix has (no `/proc`).

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

/// CPU time (user + system) of this process so far.
pub fn cpu_time() -> Duration {
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| duration(u.user_time()) + duration(u.system_time()))
        .unwrap_or_default()
}

fn duration(t: nix::sys::time::TimeVal) -> Duration {
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let micros = u64::try_from(t.tv_usec()).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

/// Peak resident set size of this process, in KiB.
pub fn peak_rss_kib() -> u64 {
    let max_rss = getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| u64::try_from(u.max_rss()).unwrap_or(0))
        .unwrap_or(0);
    // Linux and the BSDs count KiB; macOS counts bytes.
    if cfg!(target_vendor = "apple") {
        max_rss / 1024
    } else {
        max_rss
    }
}

/// Peak resident set size of this process, in MiB.
pub fn peak_rss_mib() -> f64 {
    peak_rss_kib() as f64 / 1024.0
}
