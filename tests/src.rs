//! Cross-crate integration tests live in `tests/`. This library only compiles the README's
//! code blocks as doc tests, so the README cannot drift from the API.
#![doc = include_str!("../README.md")]

pub mod extraction;
pub mod fake_server;
pub mod mcp_servers;
pub mod proc_stats;

/// A scripted answer that reports this usage, as a provider would.
pub fn with_usage(
    response: agent_core::ChatResponse,
    input: u64,
    output: u64,
) -> agent_core::ChatResponse {
    agent_core::ChatResponse {
        usage: agent_core::Usage {
            input_tokens: input,
            output_tokens: output,
            ..Default::default()
        },
        ..response
    }
}

/// The path of the default local model's file (`AGENT_LOCAL_MODEL`, else the user's
/// cache), or why there is none.
pub fn local_model_path() -> Result<std::path::PathBuf, agent_core::ModelError> {
    let home = std::env::var("HOME").ok().map(std::path::PathBuf::from);
    agent_core::backends::local::resolve_model_path(
        agent_core::backends::local::DEFAULT_MODEL,
        std::env::var("AGENT_LOCAL_MODEL").ok().as_deref(),
        home.as_deref(),
    )
}

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
