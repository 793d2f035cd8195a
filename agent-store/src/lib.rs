//! # agent-store
//!
//! Durable runs and persistent sessions for [`agent_core`]: a run survives `kill -9`, and a
//! side effect never runs twice.
//!
//! [`SqliteStore`] is the embedded default: one file, nothing to install (SQLite is compiled
//! in). Give it to an agent with [`LlmAgentBuilder::store`](agent_core::LlmAgentBuilder::store)
//! and every run is journalled as it goes; after a crash,
//! [`LlmAgent::resume_run`](agent_core::LlmAgent::resume_run) finishes it in any process.
//! The same store is the agent's memory, so sessions persist in the same file.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use agent_core::{Agent, LlmAgent, RunContext, testing::ScriptedModel};
//! use agent_store::{RunQuery, RunStore, SqliteStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Arc::new(SqliteStore::open(dir.path().join("agent.db")).unwrap());
//! let model = Arc::new(ScriptedModel::new().then_text("Hello!").then_text("Hello again!"));
//! let agent = LlmAgent::builder(model).store(store.clone()).build().unwrap();
//!
//! let ctx = RunContext::new().with_session("user-42");
//! agent.run("Hi", &ctx).await.unwrap();
//! agent.run("Hi again", &ctx).await.unwrap();
//!
//! let runs = store.list_runs(&RunQuery::new().session("user-42")).await.unwrap();
//! assert_eq!(runs.len(), 2);
//! assert_eq!(store.session_info("user-42").await.unwrap().messages, 4);
//! # });
//! ```
//!
//! Feature `postgres` adds `PostgresStore` (runs on PostgreSQL, shared by processes on many
//! machines, with leases that expire and fence late writers), a queue (`Job`,
//! `PostgresStore::claim_next`) and `Worker`, which claims and drives runs until cancelled.
//!
//! The [`RunStore`] trait and its records live in [`agent_core::durable`] (the agent needs
//! them) and are re-exported here. Feature `conformance` adds `agent_store::conformance`: the contract
//! every store keeps, for another store's tests to run.

mod common;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;
#[cfg(feature = "postgres")]
mod worker;

pub use agent_core::durable::{
    InterruptedCalls, JournalEntry, Lease, NewRun, OutcomeRecord, RunEnd, RunInfo, RunQuery,
    RunStatus, RunStore, SessionInfo, Step, StoreError, StoreErrorKind, StoredRun,
};
#[cfg(feature = "postgres")]
pub use postgres::{Claimed, Job, POSTGRES_SCHEMA_VERSION, PostgresStore, PostgresStoreBuilder};
pub use sqlite::{FORMAT_VERSION, SqliteStore};
#[cfg(feature = "postgres")]
pub use worker::{RunReport, RunReportStatus, Worker, WorkerBuilder, WorkerSummary};
