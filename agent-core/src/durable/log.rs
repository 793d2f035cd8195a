//! [`RunLog`]: one run's handle on its store, as the driver and the agent use it. It knows
//! the run's lease and how much of the conversation the store already holds, so each commit
//! writes only what is new.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::{
    JournalEntry, Lease, NewRun, OutcomeRecord, RunEnd, RunStatus, RunStore, Step, StoreError,
};
use crate::message::Message;
use crate::run::{Input, RunState, ToolInvocation};

/// A durable run's journal: the store, the lease this driver holds, and how far the store
/// has the run. Made by [`LlmAgent`](crate::LlmAgent) for runs of an agent with a store.
#[derive(Debug)]
pub struct RunLog {
    store: Arc<dyn RunStore>,
    run_id: String,
    lease: Lease,
    /// Messages of the conversation the store holds.
    stored: AtomicUsize,
    /// The last committed step.
    step: AtomicU64,
    /// Where the run's own messages begin.
    new_from: usize,
    /// The store no longer counts this driver as the run's holder (it paused, ended or
    /// let go).
    released: AtomicBool,
}

impl Drop for RunLog {
    /// A run dropped while held (its future cancelled, its task aborted) is let go, so this
    /// process can resume it at once instead of finding it busy.
    fn drop(&mut self) {
        if self.released.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (store, run_id, lease) =
                (self.store.clone(), self.run_id.clone(), self.lease.clone());
            runtime.spawn(async move {
                if let Err(e) = store.release(&run_id, &lease).await {
                    tracing::warn!(run.id = %run_id, "a dropped run could not be let go: {e}");
                }
            });
        }
    }
}

impl RunLog {
    /// Records a new run in the store and holds it.
    pub(crate) async fn create(
        store: Arc<dyn RunStore>,
        state: &mut RunState,
        agent: &str,
        session: Option<&str>,
        input: &str,
        ctx: &crate::RunContext,
    ) -> Result<RunLog, StoreError> {
        let control = control_of(state)?;
        let owner = ctx.owner.clone().unwrap_or_else(Lease::new_owner);
        let lease = store
            .create_run(NewRun {
                run_id: state.run_id(),
                agent,
                session,
                input,
                control: &control,
                messages: state.messages(),
                new_from: state.new_from(),
                owner: &owner,
            })
            .await?;
        Ok(RunLog {
            store,
            run_id: state.run_id().to_owned(),
            lease,
            stored: AtomicUsize::new(state.messages().len()),
            step: AtomicU64::new(0),
            new_from: state.new_from(),
            released: AtomicBool::new(false),
        })
    }

    /// A handle on a run just claimed from the store.
    pub(crate) fn claimed(
        store: Arc<dyn RunStore>,
        run_id: &str,
        lease: Lease,
        steps: u64,
        stored: usize,
        new_from: usize,
    ) -> RunLog {
        RunLog {
            store,
            run_id: run_id.to_owned(),
            lease,
            stored: AtomicUsize::new(stored),
            step: AtomicU64::new(steps),
            new_from,
            released: AtomicBool::new(false),
        }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The lease this driver holds the run under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Journals an input that carries something that happened (a model's answer, a tool's
    /// outcome, a human's decisions) before the machine consumes it. `turns` is the number
    /// of model calls the state has seen; `cap` its limit on tool result bytes.
    pub(crate) async fn record_input(
        &self,
        input: &Input,
        turns: u32,
        cap: usize,
    ) -> Result<(), StoreError> {
        let entry = match input {
            Input::ModelResponse(response) => JournalEntry::ModelResponse {
                turn: turns + 1,
                response: response.clone(),
                veto: None,
            },
            Input::ModelResponseVetoed(response, veto) => JournalEntry::ModelResponse {
                turn: turns + 1,
                response: response.clone(),
                veto: Some(veto.clone()),
            },
            Input::ToolFinished(outcome) => JournalEntry::ToolOutcome {
                turn: turns,
                call_id: outcome.call_id.clone(),
                outcome: OutcomeRecord::of(outcome, cap),
            },
            Input::Approvals(decisions) => JournalEntry::Approvals {
                decisions: decisions.clone(),
            },
            Input::SubAgent { call_id, run } => JournalEntry::SubAgent {
                call_id: call_id.clone(),
                run: run.clone(),
            },
            Input::HandedOff {
                agent,
                instructions,
                conversation,
            } => JournalEntry::Handoff {
                agent: agent.clone(),
                instructions: instructions.clone(),
                conversation: conversation.clone(),
            },
            _ => return Ok(()),
        };
        let (before, after) = match entry {
            JournalEntry::ModelResponse { .. } => {
                ("model_response_arrived", "model_response_journalled")
            }
            JournalEntry::ToolOutcome { .. } => ("", "tool_outcome"),
            _ => ("", ""),
        };
        super::crash_point(before);
        self.store
            .journal(&self.run_id, &self.lease, &entry)
            .await?;
        super::crash_point(after);
        Ok(())
    }

    /// Journals that a call of a tool that is not read-only is about to run.
    pub(crate) async fn record_intent(
        &self,
        turn: u32,
        invocation: &ToolInvocation,
    ) -> Result<(), StoreError> {
        let entry = JournalEntry::ToolIntent {
            turn,
            call_id: invocation.call_id.clone(),
            name: invocation.name.clone(),
            args: invocation.args.clone(),
        };
        self.store
            .journal(&self.run_id, &self.lease, &entry)
            .await?;
        super::crash_point("tool_intent");
        Ok(())
    }

    /// Commits the state as a step of a run that goes on (running, or paused for approval).
    pub(crate) async fn commit(
        &self,
        state: &mut RunState,
        status: RunStatus,
    ) -> Result<(), StoreError> {
        let control = control_of(state)?;
        let from = self.stored.load(Ordering::Acquire);
        let all = state.messages();
        let delta = all.get(from..).unwrap_or_default();
        self.write(&control, from, delta, status, None, None)
            .await?;
        self.stored.store(all.len(), Ordering::Release);
        if status != RunStatus::Running {
            self.released.store(true, Ordering::Release);
        }
        super::crash_point("step_committed");
        Ok(())
    }

    /// Commits the end of the run: the rest of its messages (`new_messages` are all of the
    /// run's own), its status and summary, and on success the session append.
    pub(crate) async fn finish(
        &self,
        state: &mut RunState,
        new_messages: &[Message],
        status: RunStatus,
        end: &RunEnd,
        session: Option<&str>,
    ) -> Result<(), StoreError> {
        let control = control_of(state)?;
        let from = self.stored.load(Ordering::Acquire);
        let delta = new_messages
            .get(from.saturating_sub(self.new_from)..)
            .unwrap_or_default();
        let session = session.filter(|_| status == RunStatus::Finished);
        self.write(&control, from, delta, status, Some(end), session)
            .await?;
        self.stored
            .store(self.new_from + new_messages.len(), Ordering::Release);
        self.released.store(true, Ordering::Release);
        Ok(())
    }

    /// Lets go of the run without ending it.
    pub(crate) async fn release(&self) -> Result<(), StoreError> {
        self.released.store(true, Ordering::Release);
        self.store.release(&self.run_id, &self.lease).await
    }

    async fn write(
        &self,
        control: &str,
        from: usize,
        delta: &[Message],
        status: RunStatus,
        end: Option<&RunEnd>,
        session: Option<&str>,
    ) -> Result<(), StoreError> {
        let step = self.step.load(Ordering::Acquire) + 1;
        self.store
            .commit(
                &self.run_id,
                &self.lease,
                Step {
                    step,
                    control,
                    messages_from: from,
                    messages: delta,
                    status,
                    end,
                    session,
                },
            )
            .await?;
        self.step.store(step, Ordering::Release);
        Ok(())
    }
}

fn control_of(state: &mut RunState) -> Result<String, StoreError> {
    state.control_json().map_err(|e| {
        StoreError::new(
            super::StoreErrorKind::Invalid,
            format!("the run's state cannot be serialised: {e}"),
        )
    })
}

impl OutcomeRecord {
    /// The record of an outcome: the text the model reads, capped at `cap` bytes as the
    /// machine caps it (so a journal never holds more of a result than the model reads).
    pub(crate) fn of(outcome: &crate::run::ToolOutcome, cap: usize) -> OutcomeRecord {
        let (is_error, content, error_kind) = match &outcome.result {
            Ok(output) => (false, output.clone().into_content(), None),
            Err(error) => (true, error.message.clone(), Some(error.kind)),
        };
        let content = crate::run::cap_tool_result(content, cap);
        OutcomeRecord {
            is_error,
            content,
            error_kind,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The outcome this record stands for, to feed back to a resumed run.
    pub(crate) fn into_outcome(self, call_id: String) -> crate::run::ToolOutcome {
        let result = if self.is_error {
            Err(crate::error::ToolError::new(
                self.error_kind
                    .unwrap_or(crate::error::ToolErrorKind::Failed),
                self.content,
            ))
        } else {
            Ok(crate::tool::ToolOutput::Text(self.content))
        };
        crate::run::ToolOutcome {
            call_id,
            result,
            duration: std::time::Duration::from_millis(self.duration_ms),
        }
    }
}
