//! The network guard for tests: while a [`NetworkGuard`] is alive (or when the process runs
//! with `AGENT_NETWORK_GUARD=1`), every request of our HTTP client (every backend) and of
//! `agent-tools`' `http_fetch` to anything but a loopback address fails at once with a
//! clear error, before any connection or DNS lookup, redirects included.
//!
//! It is process-wide on purpose: a test's agent may run its requests on any task or
//! thread. Loopback means `127.0.0.0/8`, `::1` (and `::ffff:127.x.x.x`), `localhost` and
//! names under `.localhost`; any other host name is refused without being resolved. It must
//! never loosen a check, only add one.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{ModelError, ModelErrorKind};

/// The environment variable that turns the guard on for the whole process (`1` or `true`).
pub const NETWORK_GUARD_VAR: &str = "AGENT_NETWORK_GUARD";

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn enabled_by_env() -> bool {
    static FROM_ENV: OnceLock<bool> = OnceLock::new();
    *FROM_ENV.get_or_init(|| {
        std::env::var(NETWORK_GUARD_VAR)
            .map(|v| matches!(v.trim(), "1" | "true" | "yes"))
            .unwrap_or(false)
    })
}

/// Refuses every non-loopback address while it is alive (see the [module docs](self)).
///
/// ```
/// use agent_core::backends::guard::{NetworkGuard, check_url};
/// let guard = NetworkGuard::loopback_only();
/// assert!(check_url("http://127.0.0.1:8080/v1").is_ok());
/// assert!(check_url("https://93.184.216.34/").is_err());
/// drop(guard);
/// ```
#[derive(Debug)]
#[must_use = "the guard protects only while it is alive"]
pub struct NetworkGuard(());

impl NetworkGuard {
    /// Installs the guard until the value is dropped. Guards nest: the network opens again
    /// when the last one is dropped.
    pub fn loopback_only() -> Self {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        NetworkGuard(())
    }

    /// Whether any guard (or `AGENT_NETWORK_GUARD`) is in force.
    pub fn is_active() -> bool {
        ACTIVE.load(Ordering::SeqCst) > 0 || enabled_by_env()
    }
}

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `Ok` when no guard is in force or `url` points at a loopback address; otherwise an error
/// (never retried) naming the host that was refused.
pub fn check_url(url: &str) -> Result<(), ModelError> {
    if !NetworkGuard::is_active() {
        return Ok(());
    }
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    if is_loopback(&host) {
        return Ok(());
    }
    Err(ModelError::new(
        ModelErrorKind::Configuration,
        format!(
            "network guard: `{host}` is not a loopback address; while the guard is on, requests \
             may only go to 127.0.0.1, ::1 or localhost"
        ),
    ))
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).trim_end_matches('.');
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_forms_pass_and_everything_else_is_refused() {
        for host in [
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "localhost",
            "a.localhost.",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "93.184.216.34",
            "10.0.0.1",
            "[::ffff:8.8.8.8]",
            "example.com",
            "localhost.evil.com",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
