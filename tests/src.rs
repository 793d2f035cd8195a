//! Cross-crate integration tests live in `tests/`. This library only compiles the README's
//! code blocks as doc tests, so the README cannot drift from the API.
#![doc = include_str!("../README.md")]

pub mod extraction;
pub mod fake_server;
pub mod mcp_servers;
pub mod proc_stats;

/// The standard output of a finished command, after checking it succeeded (the failure
/// message shows both of its outputs).
pub fn stdout_of_success(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the command failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
