//! The parts of the conformance checks, public so that process-level crash tests drive the
//! very same run: a model that is a pure function of its request (a new process replays the
//! same script), three tools that record their effects in a [`Ledger`] (read-only,
//! idempotent, side-effecting), and [`FailingStore`], a store that stops taking writes
//! after the k-th, as a crashed process would.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use agent_core::durable::{
    InterruptedCalls, JournalEntry, Lease, NewRun, RunInfo, RunQuery, RunStore, SessionInfo, Step,
    StoreError, StoreErrorKind, StoredRun,
};
use agent_core::{
    ChatModel, ChatRequest, ChatResponse, LlmAgent, Memory, MemoryError, Message, ModelError,
    ToolCall, ToolResult, async_trait, tool_fn,
};
use serde::Deserialize;

/// A process id no Linux or macOS process can have (above Linux's `PID_MAX_LIMIT`, 2^22):
/// the owner of a run whose driver is gone.
pub const DEAD_PID: u32 = 4_194_305;

/// An owner name for a driver whose process is gone.
pub fn dead_owner() -> String {
    format!("pid:{DEAD_PID}:crashed")
}

/// Where the tools record what they did: in memory, or (for tests across processes) a file
/// outside the store, appended one line per effect.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    file: Option<PathBuf>,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What a ledger says happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Emails sent (the side-effecting tool's runs).
    pub side_effects: usize,
    /// Distinct idempotency keys charged (what an idempotent service would do once each).
    pub idempotent_keys: usize,
    /// Times the idempotent tool ran.
    pub idempotent_runs: usize,
}

impl Ledger {
    /// A ledger in a file (appended to, shared by every process that names it).
    pub fn in_file(path: impl Into<PathBuf>) -> Ledger {
        Ledger {
            file: Some(path.into()),
            lines: Arc::default(),
        }
    }

    /// Appends a line (one effect).
    pub fn record(&self, line: String) {
        match &self.file {
            Some(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open the ledger");
                file.write_all(format!("{line}\n").as_bytes())
                    .expect("write the ledger");
            }
            None => self.lines.lock().expect("ledger").push(line),
        }
    }

    /// Every line recorded, in order.
    pub fn lines(&self) -> Vec<String> {
        match &self.file {
            Some(path) => std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            None => self.lines.lock().expect("ledger").clone(),
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lines().is_empty()
    }

    /// What happened, counted.
    pub fn outcome(&self) -> Outcome {
        let lines = self.lines();
        let mut keys: Vec<&str> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("charge "))
            .collect();
        let idempotent_runs = keys.len();
        keys.sort_unstable();
        keys.dedup();
        Outcome {
            side_effects: lines.iter().filter(|l| l.starts_with("email ")).count(),
            idempotent_keys: keys.len(),
            idempotent_runs,
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Lookup {
    /// What to look up.
    q: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Charge {
    /// The amount.
    amount: u32,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Email {
    /// The address.
    to: String,
}

/// Aborts the process inside the named tool, after its effect, when
/// `AGENT_CRASH_IN_TOOL` names it (the process-level crash tests' "inside a tool" point).
fn crash_inside(tool: &str) {
    if std::env::var("AGENT_CRASH_IN_TOOL").is_ok_and(|t| t == tool) {
        std::process::abort();
    }
}

/// The errand agent: `lookup` (read-only) and `charge` (idempotent) in the first turn,
/// `send_email` (side-effecting) in the second, then a final answer.
pub fn agent(store: Arc<dyn RunStore>, ledger: &Ledger, interrupted: InterruptedCalls) -> LlmAgent {
    let (l1, l2, l3) = (ledger.clone(), ledger.clone(), ledger.clone());
    LlmAgent::builder(Arc::new(ErrandModel))
        .name("errand")
        .instructions("Run the errand.")
        .store(store)
        .on_interrupted_calls(interrupted)
        .tool(
            tool_fn("lookup", "Looks something up.", move |a: Lookup, _ctx| {
                let ledger = l1.clone();
                async move {
                    ledger.record(format!("lookup {}", a.q));
                    Ok(format!("{} is sunny", a.q))
                }
            })
            .read_only(),
        )
        .tool(
            tool_fn("charge", "Charges the card.", move |a: Charge, ctx| {
                let ledger = l2.clone();
                async move {
                    ledger.record(format!("charge {}", ctx.idempotency_key()));
                    crash_inside("charge");
                    Ok(format!("charged {}", a.amount))
                }
            })
            .with_meta(agent_core::ToolMeta::idempotent()),
        )
        .tool(tool_fn(
            "send_email",
            "Sends an email.",
            move |a: Email, ctx| {
                let ledger = l3.clone();
                async move {
                    ledger.record(format!("email {} {}", ctx.idempotency_key(), a.to));
                    crash_inside("send_email");
                    Ok(format!("sent to {}", a.to))
                }
            },
        ))
        .build()
        .expect("the errand agent")
}

/// The approval tests' agent, `janitor`: its `delete` tool needs a human's approval before
/// each call; `model` plays its turns.
pub fn janitor(store: Arc<dyn RunStore>, model: agent_core::testing::ScriptedModel) -> LlmAgent {
    LlmAgent::builder(Arc::new(model))
        .name("janitor")
        .store(store)
        .tool(
            tool_fn(
                "delete",
                "Deletes a file.",
                |_: serde_json::Value, _| async move { Ok("deleted") },
            )
            .with_meta(agent_core::ToolMeta::side_effecting().with_approval()),
        )
        .build()
        .expect("the janitor agent")
}

/// The errand's model: its answer depends only on how many assistant turns follow the last
/// user message of the request, so every process gives the same answers.
#[derive(Debug)]
pub struct ErrandModel;

#[async_trait]
impl ChatModel for ErrandModel {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn model(&self) -> &str {
        "errand"
    }

    async fn chat(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let since_user = request
            .messages
            .iter()
            .rev()
            .take_while(|m| !matches!(m, Message::User { .. }))
            .filter(|m| matches!(m, Message::Assistant(_)))
            .count();
        Ok(match since_user {
            0 => ChatResponse::tool_calls(vec![
                ToolCall::new("", "lookup", &serde_json::json!({"q": "weather"})),
                ToolCall::new("", "charge", &serde_json::json!({"amount": 5})),
            ]),
            1 => ChatResponse::tool_calls(vec![ToolCall::new(
                "",
                "send_email",
                &serde_json::json!({"to": "ada@example.com"}),
            )]),
            _ => ChatResponse::text("All done: looked up, charged, emailed."),
        })
    }
}

/// The history a resumed run should have: the uninterrupted one, except that a
/// side-effecting call interrupted while it ran reads "outcome unknown" (taken from
/// `resumed`, after checking it is one).
pub fn expected_after_crash(baseline: &[Message], resumed: &[Message]) -> Vec<Message> {
    let unknown: Vec<&ToolResult> = resumed
        .iter()
        .filter_map(|m| match m {
            Message::Tool(r) if r.content.contains("the outcome of this call is unknown") => {
                Some(r)
            }
            _ => None,
        })
        .collect();
    assert!(
        unknown.len() <= 1,
        "more than one unknown outcome: {unknown:?}"
    );
    let mut expected = baseline.to_vec();
    if let Some(unknown) = unknown.first() {
        assert_eq!(
            unknown.name, "send_email",
            "only a side-effecting call is unknown"
        );
        assert!(unknown.is_error);
        for m in &mut expected {
            if let Message::Tool(r) = m
                && r.call_id == unknown.call_id
            {
                *r = (*unknown).clone();
            }
        }
    }
    expected
}

/// A store that takes its first `limit` writes (creations, journal records, commits,
/// releases) and refuses every one after, as a process that crashed would stop writing.
/// Runs it creates or claims are owned by [`dead_owner`], so a resume on the inner store can
/// claim them at once.
#[derive(Debug)]
pub struct FailingStore {
    inner: Arc<dyn RunStore>,
    limit: u32,
    writes: AtomicU32,
    run_id: Mutex<Option<String>>,
}

impl FailingStore {
    /// Wraps a store; the writes after the `limit`-th fail.
    pub fn new(inner: Arc<dyn RunStore>, limit: u32) -> FailingStore {
        FailingStore {
            inner,
            limit,
            writes: AtomicU32::new(0),
            run_id: Mutex::new(None),
        }
    }

    /// Writes attempted so far.
    pub fn writes(&self) -> u32 {
        self.writes.load(Ordering::SeqCst)
    }

    /// The run created through this store, once its creation landed.
    pub fn run_id(&self) -> Option<String> {
        self.run_id.lock().expect("run id").clone()
    }

    fn write(&self) -> Result<(), StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n > self.limit {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "the store stopped after {} writes (a simulated crash)",
                    self.limit
                ),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl RunStore for FailingStore {
    async fn create_run(&self, run: NewRun<'_>) -> Result<Lease, StoreError> {
        self.write()?;
        let owner = dead_owner();
        let lease = self
            .inner
            .create_run(NewRun {
                owner: &owner,
                ..run
            })
            .await?;
        *self.run_id.lock().expect("run id") = Some(run.run_id.to_owned());
        Ok(lease)
    }

    async fn claim_run(
        &self,
        run_id: &str,
        _owner: &str,
    ) -> Result<(StoredRun, Lease), StoreError> {
        self.write()?;
        self.inner.claim_run(run_id, &dead_owner()).await
    }

    async fn journal(
        &self,
        run_id: &str,
        lease: &Lease,
        entry: &JournalEntry,
    ) -> Result<(), StoreError> {
        self.write()?;
        self.inner.journal(run_id, lease, entry).await
    }

    async fn commit(&self, run_id: &str, lease: &Lease, step: Step<'_>) -> Result<(), StoreError> {
        self.write()?;
        self.inner.commit(run_id, lease, step).await
    }

    async fn release(&self, run_id: &str, lease: &Lease) -> Result<(), StoreError> {
        if self.writes() >= self.limit {
            return Err(StoreError::new(StoreErrorKind::Unavailable, "crashed"));
        }
        self.inner.release(run_id, lease).await
    }

    async fn load_run(&self, run_id: &str) -> Result<StoredRun, StoreError> {
        self.inner.load_run(run_id).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunInfo>, StoreError> {
        self.inner.list_runs(query).await
    }

    async fn delete_run(&self, run_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_run(run_id).await
    }

    async fn session_info(&self, session: &str) -> Result<SessionInfo, StoreError> {
        self.inner.session_info(session).await
    }
}

#[async_trait]
impl Memory for FailingStore {
    async fn load(&self, session: &str) -> Result<Vec<Message>, MemoryError> {
        self.inner.load(session).await
    }

    async fn append(&self, session: &str, messages: &[Message]) -> Result<(), MemoryError> {
        self.inner.append(session, messages).await
    }

    async fn clear(&self, session: &str) -> Result<(), MemoryError> {
        self.inner.clear(session).await
    }
}
