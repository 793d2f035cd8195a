//! Cross-crate integration tests live in `tests/`. This library only compiles the README's
//! code blocks as doc tests, so the README cannot drift from the API.
#![doc = include_str!("../README.md")]

pub mod fake_server;
pub mod mcp_servers;
pub mod proc_stats;
