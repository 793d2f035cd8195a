//! The async driver: carries out the state machine's actions and reports what happened.
//!
//! All I/O of a run happens here, and no decision: the driver calls the model, runs tools,
//! consults hooks and budgets, records spans and events, and feeds each thing that happened
//! to the machine as an [`Input`] (a hook's stop and a budget overrun included), which
//! decides what comes next. The loop is in [`drive_with`]; its I/O helpers sit below it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::BoxStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::RunLimits;
use super::control::{EventSink, HookAction, RunEvent, RunHooks, ToolHookAction};
use super::handoff::Roster;
use super::nested::{EventRelay, NestedLink, NestedResume};
use super::outcome::{AgentError, RunResult};
use super::state::{
    Action, BudgetOverrun, Input, RunState, ToolInvocation, ToolOutcome, Veto, cap_tool_result,
};
use crate::budget::{BudgetTracker, Exceeded, Refusal, default_prices};
use crate::durable::{RunLog, RunStatus};
use crate::error::{ModelError, ModelErrorKind, ToolError, ToolErrorKind};
use crate::message::{ToolCall, ToolResult};
use crate::model::{ChatModel, ChatRequest, ChatResponse, StreamEvent};
use crate::telemetry::spans as telemetry;
use crate::tool::{SideEffect, ToolContext, ToolSet};

/// Runs a state machine to its end: calls the model, runs the tools, feeds the outcomes back.
///
/// Works from a fresh [`RunState`] and from one restored mid-run. `cancel` stops the run
/// promptly at any point; the error then carries the history, every tool call answered.
pub async fn drive(
    state: &mut RunState,
    model: &dyn ChatModel,
    tools: &ToolSet,
    agent: &str,
    cancel: &CancellationToken,
) -> Result<RunResult, AgentError> {
    let controls = RunControls {
        hooks: &[],
        emit: EventSink::none(),
        budget: None,
        journal: None,
        replay: Vec::new(),
        roster: None,
    };
    drive_with(state, model, tools, agent, cancel, Input::Resume, controls).await
}

/// The caller's side of [`drive_with`]: hooks to consult and where events go.
pub struct RunControls<'a> {
    /// Consulted around every model and tool call, in order.
    pub hooks: &'a [Arc<dyn RunHooks>],
    /// Receives every [`RunEvent`] as it happens.
    pub emit: EventSink<'a>,
    /// Limits checked before and after every model call and before every turn's tool calls.
    pub budget: Option<Arc<BudgetTracker>>,
    /// The durable run's journal, for runs of an agent with a store: what happens is
    /// journalled before the machine hears of it, and each step is committed.
    pub journal: Option<&'a RunLog>,
    /// Inputs already journalled (by an earlier process), fed to the machine after `first`
    /// and before anything new is done: how a resumed run catches up.
    pub replay: Vec<Input>,
    /// The agents the run may hand its conversation to; without, a handoff stops the run.
    pub roster: Option<&'a dyn Roster>,
}

/// [`drive`] with a first input (for example [`Input::Approvals`] when resuming a paused
/// run), hooks and events.
pub async fn drive_with<'a>(
    state: &mut RunState,
    model: &'a dyn ChatModel,
    tools: &'a ToolSet,
    agent: &str,
    cancel: &'a CancellationToken,
    first: Input,
    controls: RunControls<'a>,
) -> Result<RunResult, AgentError> {
    let RunControls {
        hooks,
        mut emit,
        budget,
        journal,
        replay,
        roster,
    } = controls;
    let mut tools = tools;
    let mut model = model;
    // A run handed off earlier goes on with the agent it was handed to.
    if let Some(member) = state.active_agent().and_then(|a| roster?.member(a)) {
        (tools, model) = (member.tools, member.model);
    }
    let limits = state.limits().clone();
    let (run_id, agent): (Arc<str>, Arc<str>) = (Arc::from(state.run_id()), Arc::from(agent));
    let runner = ToolRunner {
        tools,
        limits: &limits,
        run_id: &run_id,
        agent: &agent,
        cancel,
        budget: budget.as_ref(),
        turn: 0,
        journal,
    };
    let mut models = ModelIo {
        model,
        hooks,
        budget: budget.as_ref(),
        cancel,
        stream: state.settings().stream,
    };
    let mut turn = ToolTurn::new(runner, hooks);
    let mut replay = VecDeque::from(replay);
    let mut input = first;
    let mut replayed = false;
    loop {
        let resumed = matches!(input, Input::Resume);
        // The new agent's tools apply from the handoff on (also when it is replayed).
        if let Input::HandedOff { agent, .. } = &input
            && let Some(member) = roster.and_then(|r| r.member(agent))
        {
            tools = member.tools;
            turn.runner.tools = member.tools;
            models.model = member.model;
        }
        if let Some(log) = journal
            && !replayed
        {
            log.record_input(&input, state.turns(), limits.max_tool_result_bytes)
                .await
                .map_err(AgentError::Store)?;
        }
        let action = state.step(tools, input);
        // While a resumed run catches up, nothing is committed: the records being fed back
        // belong to the last committed step, and a commit before the last of them is in
        // would orphan the rest if this process died too.
        if let Some(log) = journal
            && replay.is_empty()
        {
            let status = match &action {
                Action::Paused { .. } => Some(RunStatus::Paused),
                // A resume changes nothing worth a write.
                Action::CallModel(_) | Action::WrapUp(_) | Action::RunTools { .. } if resumed => {
                    None
                }
                Action::CallModel(_) | Action::WrapUp(_) | Action::RunTools { .. } => {
                    Some(RunStatus::Running)
                }
                Action::AwaitTools
                | Action::HandOff { .. }
                | Action::Finished(_)
                | Action::Failed(_) => None,
            };
            if let Some(status) = status {
                log.commit(state, status).await.map_err(AgentError::Store)?;
            }
        }
        // A resumed run first catches up on what was journalled; nothing is carried out
        // until then (a pause may be lifted by journalled decisions).
        if !matches!(action, Action::Finished(_) | Action::Failed(_))
            && let Some(next) = replay.pop_front()
        {
            input = next;
            replayed = true;
            continue;
        }
        replayed = false;
        input = match action {
            Action::Finished(result) => return Ok(result),
            Action::Failed(error) => return Err(error),
            Action::Paused { result, refused } => {
                report_refused(emit.reborrow(), refused);
                if let Some(paused) = &result.interruption {
                    emit.send(|| RunEvent::ApprovalRequested(paused.pending.clone()));
                }
                return Ok(result);
            }
            // What already happened is reported before anything new is done.
            _ if turn.has_reported() => turn.take_reported(),
            Action::CallModel(request) => {
                models
                    .call(&request, true, state.turns() + 1, emit.reborrow())
                    .await
            }
            Action::WrapUp(request) => {
                let budgeted = !state.is_budget_wrap_up();
                models
                    .call(&request, budgeted, state.turns() + 1, emit.reborrow())
                    .await
            }
            Action::RunTools { run, refused } => {
                report_refused(emit.reborrow(), refused);
                turn.resumes = state.nested_resumes().clone();
                turn.start(run, state.turns(), emit.reborrow()).await;
                turn.next(emit.reborrow()).await
            }
            Action::AwaitTools => turn.next(emit.reborrow()).await,
            Action::HandOff { to } => {
                let from = state.active_agent().unwrap_or(&agent).to_owned();
                match roster.filter(|r| r.member(&to).is_some()) {
                    None => Input::Stopped(format!(
                        "`{from}` handed the conversation to `{to}`, but this run has no agent \
                         of that name (run it through a `Team` that has it)"
                    )),
                    Some(roster) => {
                        let messages = state.messages();
                        let system = usize::from(matches!(
                            messages.first(),
                            Some(crate::message::Message::System { .. })
                        ));
                        let conversation = roster.hand_off(&from, &to, &messages[system..]);
                        let instructions = roster
                            .member(&to)
                            .and_then(|m| m.instructions.map(str::to_owned));
                        emit.send(|| RunEvent::Handoff {
                            from,
                            to: to.clone(),
                        });
                        Input::HandedOff {
                            agent: to,
                            instructions,
                            conversation,
                        }
                    }
                }
            }
        };
    }
}

fn report_refused(mut emit: EventSink<'_>, refused: Vec<ToolResult>) {
    for result in refused {
        emit.send(|| RunEvent::ToolCallFinished {
            call_id: result.call_id,
            name: result.name,
            content: result.content,
            is_error: true,
            duration: Duration::ZERO,
        });
    }
}

fn overrun(tracker: &BudgetTracker, exceeded: Exceeded) -> BudgetOverrun {
    BudgetOverrun {
        exceeded,
        on_exceeded: tracker.budget().on_exceeded,
    }
}

/// The model side of a run: one call, with its hooks, budget checks, span and events.
struct ModelIo<'a> {
    model: &'a dyn ChatModel,
    hooks: &'a [Arc<dyn RunHooks>],
    budget: Option<&'a Arc<BudgetTracker>>,
    cancel: &'a CancellationToken,
    stream: bool,
}

impl ModelIo<'_> {
    /// Consults the hooks and (when `budgeted`) the budget, calls the model, and says what
    /// happened.
    async fn call(
        &self,
        request: &ChatRequest,
        budgeted: bool,
        turn: u32,
        mut emit: EventSink<'_>,
    ) -> Input {
        if self.cancel.is_cancelled() {
            return Input::Cancelled;
        }
        for hook in self.hooks {
            if let HookAction::Stop(reason) = hook.before_model(request).await {
                return Input::Stopped(reason);
            }
        }
        // The ledger holds the call's worst case until it is settled below (a call that is
        // not made drops its reservation, which releases it). The wrap-up call is never
        // refused, but it is booked.
        let reservation = match self.budget {
            Some(tracker) => match tracker.reserve(self.model.model(), request) {
                Ok(reservation) => Some(reservation),
                Err(Refusal::Unpriced { model }) => {
                    let refusal = Refusal::Unpriced {
                        model: model.clone(),
                    };
                    return Input::ModelFailed(
                        ModelError::new(ModelErrorKind::Configuration, refusal.to_string())
                            .with_provider(self.model.provider(), model),
                    );
                }
                Err(Refusal::Exceeded(exceeded)) if budgeted => {
                    return Input::OverBudget(overrun(tracker, exceeded));
                }
                Err(Refusal::Exceeded(_)) => None,
            },
            None => None,
        };
        emit.send(|| RunEvent::TurnStarted { turn });
        let span = telemetry::chat_span(self.model, request, turn, self.stream);
        let call = async {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => None,
                r = call_model(self.model, request, self.stream, emit.reborrow()) => Some(r),
            }
        };
        let response = match call.instrument(span.clone()).await {
            None => return Input::Cancelled,
            Some(Err(error)) => {
                telemetry::record_chat_error(&span, &error);
                tracing::warn!(parent: &span, error = %error, "model call failed");
                return Input::ModelFailed(error);
            }
            Some(Ok(mut response)) => {
                // Usage the provider did not report is estimated, never zero.
                response.fill_missing_usage(request);
                // Every answer names its model (a fallback's already does).
                if response.model.is_none() {
                    response.model = Some(self.model.model().to_owned());
                }
                response
            }
        };
        let usage = response.usage;
        // A fallback's answer is priced at the model that gave it.
        let answered_by = response.model.as_deref().unwrap_or(self.model.model());
        let prices = self.budget.map(|tracker| tracker.prices());
        telemetry::record_chat_response(&span, &response, answered_by, prices);
        let over = self.budget.and_then(|tracker| {
            let booked = match reservation {
                Some(reservation) => reservation.settle(answered_by, &usage),
                None => tracker.record_model_call(answered_by, &usage),
            };
            booked.err().map(|exceeded| overrun(tracker, exceeded))
        });
        emit.send(|| {
            let prices = prices.unwrap_or(default_prices());
            RunEvent::TurnFinished {
                turn,
                usage,
                model: answered_by.to_owned(),
                cost_usd: prices.cost(answered_by, &usage),
            }
        });
        let mut veto = over.map(Veto::OverBudget);
        for hook in self.hooks {
            if let HookAction::Stop(reason) = hook.after_model(&response).await {
                veto = Some(Veto::Stopped(reason));
                break;
            }
        }
        match veto {
            Some(veto) => Input::ModelResponseVetoed(response, veto),
            None => Input::ModelResponse(response),
        }
    }
}

async fn call_model(
    model: &dyn ChatModel,
    request: &ChatRequest,
    stream: bool,
    mut emit: EventSink<'_>,
) -> Result<ChatResponse, ModelError> {
    if !stream {
        let (response, waits) = crate::resilience::limit::collect_waits(model.chat(request)).await;
        report_waits(&mut emit, waits);
        let response = response?;
        if let Some(text) = response
            .message
            .reasoning
            .as_ref()
            .and_then(|r| r.text.clone())
        {
            emit.send(|| RunEvent::ReasoningDelta(text));
        }
        if !response.message.content.is_empty() {
            emit.send(|| RunEvent::TextDelta(response.message.content.clone()));
        }
        return Ok(response);
    }
    let (events, waits) = crate::resilience::limit::collect_waits(model.chat_stream(request)).await;
    report_waits(&mut emit, waits);
    let mut events = events?;
    while let Some(event) = events.next().await {
        match event? {
            StreamEvent::TextDelta(text) => emit.send(|| RunEvent::TextDelta(text)),
            StreamEvent::ReasoningDelta(text) => emit.send(|| RunEvent::ReasoningDelta(text)),
            StreamEvent::ToolCallStarted { index, id, name } => {
                emit.send(|| RunEvent::ToolCallStreamed {
                    index,
                    call_id: id,
                    name,
                })
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                emit.send(|| RunEvent::ToolArgumentsDelta { index, arguments })
            }
            StreamEvent::Completed(response) => return Ok(response),
            _ => {}
        }
    }
    Err(ModelError::new(
        ModelErrorKind::StreamInterrupted,
        "the stream ended without a complete answer",
    )
    .with_provider(model.provider(), model.model()))
}

/// The waits for shared limits a model call met, as events.
fn report_waits(emit: &mut EventSink<'_>, waits: Vec<crate::resilience::limit::ModelWait>) {
    for wait in waits {
        emit.send(|| RunEvent::ModelWaited {
            limit: wait.limit,
            reason: wait.reason.to_owned(),
            waited: wait.waited,
        });
    }
}

/// The tool side of a run: one turn's calls in flight, and what already happened that the
/// machine has not heard yet (a hook's skip or stop, a budget overrun, cancellation).
struct ToolTurn<'a> {
    runner: ToolRunner<'a>,
    hooks: &'a [Arc<dyn RunHooks>],
    reported: VecDeque<Input>,
    /// Each finished call, by its position in `ran`, as it finishes.
    running: Option<BoxStream<'a, (usize, ToolOutcome)>>,
    /// The calls started, kept only for hooks and events.
    ran: Vec<ToolInvocation>,
    /// The links lent to the calls started (by position), when a tool of the turn nests
    /// runs; empty otherwise.
    links: Vec<Option<Arc<NestedLink>>>,
    /// Nested runs paused for approval that calls of this turn resume, by call id.
    resumes: BTreeMap<String, NestedResume>,
    /// Nested runs' events, while somebody listens.
    relayed: Option<UnboundedReceiver<RunEvent>>,
    relay: Option<EventRelay>,
}

impl<'a> ToolTurn<'a> {
    fn new(runner: ToolRunner<'a>, hooks: &'a [Arc<dyn RunHooks>]) -> Self {
        ToolTurn {
            runner,
            hooks,
            reported: VecDeque::new(),
            running: None,
            ran: Vec::new(),
            links: Vec::new(),
            resumes: BTreeMap::new(),
            relayed: None,
            relay: None,
        }
    }

    fn has_reported(&self) -> bool {
        !self.reported.is_empty()
    }

    fn take_reported(&mut self) -> Input {
        self.reported.pop_front().unwrap_or(Input::Resume)
    }

    /// Checks the budget, offers each call to the hooks (which may skip it, rewrite its
    /// arguments or stop the run), and starts the calls that remain.
    async fn start(&mut self, run: Vec<ToolInvocation>, turn: u32, mut emit: EventSink<'_>) {
        self.runner.turn = turn;
        let runner: ToolRunner<'a> = self.runner;
        self.running = None;
        if run.is_empty() {
            return;
        }
        if runner.cancel.is_cancelled() {
            return self.reported.push_back(Input::Cancelled);
        }
        if let Some(tracker) = runner.budget
            && let Err(exceeded) = tracker.record_tool_calls(run.len() as u32)
        {
            return self
                .reported
                .push_back(Input::OverBudget(overrun(tracker, exceeded)));
        }
        let mut runnable = Vec::with_capacity(run.len());
        for mut invocation in run {
            let mut skipped = None;
            for hook in self.hooks {
                match hook.before_tool(&invocation).await {
                    ToolHookAction::Continue => continue,
                    ToolHookAction::Skip(result) => skipped = Some(result),
                    ToolHookAction::RewriteArgs(args) => {
                        let call = ToolCall::new(&invocation.call_id, &invocation.name, &args);
                        match runner.tools.check_call(&call) {
                            Ok(args) => invocation.args = args,
                            Err(error) => skipped = Some(Err(error)),
                        }
                    }
                    ToolHookAction::Stop(reason) => {
                        return self.reported.push_back(Input::Stopped(reason));
                    }
                }
                if skipped.is_some() {
                    break;
                }
            }
            match skipped {
                Some(result) => {
                    let outcome = ToolOutcome {
                        call_id: invocation.call_id,
                        result,
                        duration: Duration::ZERO,
                    };
                    let cap = runner.limits.max_tool_result_bytes;
                    emit.send(|| finished_event(&invocation.name, &outcome, cap));
                    self.reported.push_back(Input::ToolFinished(outcome));
                }
                None => runnable.push(invocation),
            }
        }
        for invocation in &runnable {
            emit.send(|| RunEvent::ToolCallStarted {
                call_id: invocation.call_id.clone(),
                name: invocation.name.clone(),
                arguments: invocation.args.clone(),
            });
        }
        // Keep the invocations only for whoever looks at them afterwards.
        self.ran = if self.hooks.is_empty() && !emit.is_listening() {
            Vec::new()
        } else {
            runnable.clone()
        };
        // Calls of tools that nest runs get a link: for what the nested run spent, its
        // events (while somebody listens) and the paused run they resume.
        let nests = |i: &ToolInvocation| runner.tools.get(&i.name).is_some_and(|t| t.nests_runs());
        self.links.clear();
        if runnable.iter().any(nests) {
            if emit.is_listening() && self.relay.is_none() {
                let (sender, receiver) = futures::channel::mpsc::unbounded();
                self.relay = Some(EventRelay::new(sender));
                self.relayed = Some(receiver);
            }
            self.links = runnable
                .iter()
                .map(|i| {
                    nests(i).then(|| {
                        let resume = self.resumes.remove(&i.call_id);
                        Arc::new(NestedLink::new(self.relay.clone(), resume))
                    })
                })
                .collect();
        }
        let linked = runnable
            .into_iter()
            .enumerate()
            .map(|(n, i)| (i, self.links.get(n).cloned().flatten()))
            .collect();
        self.running = Some(runner.run_linked(linked).boxed());
    }

    /// Sends on the nested runs' events received so far.
    fn relay_events(&mut self, emit: &mut EventSink<'_>) {
        if let Some(relayed) = self.relayed.as_mut() {
            while let Ok(event) = relayed.try_recv() {
                emit.send(|| event);
            }
        }
    }

    /// What happened next: something already reported, else the next call to finish (after
    /// the hooks saw it), or the run's cancellation.
    async fn next(&mut self, mut emit: EventSink<'_>) -> Input {
        if let Some(input) = self.reported.pop_front() {
            return input;
        }
        let Some(running) = self.running.as_mut() else {
            return Input::Resume;
        };
        let finished = loop {
            let relayed = async {
                match self.relayed.as_mut() {
                    Some(relayed) => relayed.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.runner.cancel.cancelled() => return Input::Cancelled,
                finished = running.next() => break finished,
                Some(event) = relayed => emit.send(|| event),
            }
        };
        // A nested run's events all come before its call's result.
        self.relay_events(&mut emit);
        let Some((i, mut outcome)) = finished else {
            self.running = None;
            return Input::Resume;
        };
        let report = self
            .links
            .get(i)
            .and_then(|link| link.as_ref()?.take_report());
        if let Some(invocation) = self.ran.get(i) {
            for hook in self.hooks {
                match hook.after_tool(invocation, &outcome.result).await {
                    ToolHookAction::Skip(result) => outcome.result = result,
                    ToolHookAction::Stop(reason) => {
                        self.reported.push_back(Input::Stopped(reason));
                        break;
                    }
                    ToolHookAction::Continue | ToolHookAction::RewriteArgs(_) => {}
                }
            }
            let cap = self.runner.limits.max_tool_result_bytes;
            emit.send(|| finished_event(&invocation.name, &outcome, cap));
        }
        match report {
            Some(run) => {
                let call_id = outcome.call_id.clone();
                self.reported.push_front(Input::ToolFinished(outcome));
                Input::SubAgent {
                    call_id,
                    run: Box::new(run),
                }
            }
            None => Input::ToolFinished(outcome),
        }
    }
}

/// The event for a finished call, with the content the model will read.
fn finished_event(name: &str, outcome: &ToolOutcome, cap: usize) -> RunEvent {
    let (content, is_error) = match &outcome.result {
        Ok(output) => (output.clone().into_content(), false),
        Err(error) => (format!("Error: {}", error.message), true),
    };
    RunEvent::ToolCallFinished {
        call_id: outcome.call_id.clone(),
        name: name.to_owned(),
        content: cap_tool_result(content, cap),
        is_error,
        duration: outcome.duration,
    }
}

/// A call of a turn, by position, with the link lent to it if its tool nests runs.
type LinkedCall = (usize, ToolInvocation, Option<Arc<NestedLink>>);

/// Runs the tool calls of one turn for a run: the tools, the limits, and the run's
/// identity and cancellation token that every call's [`ToolContext`] is made from.
#[derive(Clone, Copy, Debug)]
pub struct ToolRunner<'a> {
    /// The tools.
    pub tools: &'a ToolSet,
    /// Timeout and parallelism limits.
    pub limits: &'a RunLimits,
    /// The run's id, given to each call.
    pub run_id: &'a Arc<str>,
    /// The agent's name, given to each call.
    pub agent: &'a Arc<str>,
    /// The run's cancellation token; each call gets a child of it.
    pub cancel: &'a CancellationToken,
    /// The run's budget, handed to each call (for nested runs).
    pub budget: Option<&'a Arc<BudgetTracker>>,
    /// The model call whose answer made these calls (for [`ToolContext::turn`]).
    pub turn: u32,
    /// A durable run's journal: each call of a tool that is not read-only is journalled
    /// as an intent before it runs.
    pub journal: Option<&'a RunLog>,
}

impl<'a> ToolRunner<'a> {
    /// Runs one turn's tool calls and returns their outcomes in call order.
    ///
    /// Consecutive parallel-safe calls run concurrently (at most `limits.max_parallel_tools`
    /// at once); any other call runs alone, after the calls before it and before the calls
    /// after it, so side effects happen in the order the model asked for them.
    pub async fn run(&self, invocations: Vec<ToolInvocation>) -> Vec<ToolOutcome> {
        let mut outcomes: Vec<Option<ToolOutcome>> = vec![None; invocations.len()];
        let mut finished = self.run_each(invocations);
        while let Some((i, outcome)) = finished.next().await {
            outcomes[i] = Some(outcome);
        }
        outcomes.into_iter().flatten().collect()
    }

    /// [`run`](Self::run), giving each outcome as its call finishes, with the call's position
    /// in `invocations`.
    pub fn run_each(
        &self,
        invocations: Vec<ToolInvocation>,
    ) -> impl futures::Stream<Item = (usize, ToolOutcome)> + Send + use<'a> {
        self.run_linked(invocations.into_iter().map(|i| (i, None)).collect())
    }

    /// [`run_each`](Self::run_each), lending each call its link, if any.
    fn run_linked(
        &self,
        invocations: Vec<(ToolInvocation, Option<Arc<NestedLink>>)>,
    ) -> impl futures::Stream<Item = (usize, ToolOutcome)> + Send + use<'a> {
        // Groups that run one after another: a run of parallel-safe calls, or one other call.
        let mut groups: Vec<Vec<LinkedCall>> = Vec::new();
        let mut open_parallel = false;
        for (i, (invocation, link)) in invocations.into_iter().enumerate() {
            let parallel = self
                .tools
                .meta(&invocation.name)
                .is_some_and(|m| m.parallel_safe);
            match groups.last_mut() {
                Some(group) if parallel && open_parallel => group.push((i, invocation, link)),
                _ => groups.push(vec![(i, invocation, link)]),
            }
            open_parallel = parallel;
        }
        let runner = *self;
        let width = self.limits.max_parallel_tools.max(1);
        futures::stream::iter(groups).flat_map(move |group| {
            futures::stream::iter(group)
                .map(move |(i, invocation, link)| async move {
                    (i, runner.run_one(invocation, link).await)
                })
                .buffer_unordered(width)
        })
    }

    async fn run_one(
        self,
        invocation: ToolInvocation,
        link: Option<Arc<NestedLink>>,
    ) -> ToolOutcome {
        let not_run = |invocation: ToolInvocation, kind, why: String| ToolOutcome {
            call_id: invocation.call_id,
            result: Err(ToolError::new(kind, why)),
            duration: Duration::ZERO,
        };
        if self.cancel.is_cancelled() {
            let why = format!(
                "`{}` was not run because the run was cancelled.",
                invocation.name
            );
            return not_run(invocation, ToolErrorKind::Cancelled, why);
        }
        if let Some(log) = self.journal
            && self
                .tools
                .meta(&invocation.name)
                .is_some_and(|m| m.side_effect != SideEffect::ReadOnly)
            && let Err(error) = log.record_intent(self.turn, &invocation).await
        {
            let why = format!(
                "`{}` was not run: the run's journal could not be written ({error}).",
                invocation.name
            );
            return not_run(invocation, ToolErrorKind::Unavailable, why);
        }
        let ToolInvocation {
            call_id,
            name,
            args,
        } = invocation;
        let description = self.tools.description(&name);
        let span = telemetry::tool_span(&name, &call_id, description, self.turn, &args);
        let ctx = ToolContext {
            run_id: self.run_id.clone(),
            agent: self.agent.clone(),
            call_id: call_id.clone(),
            turn: self.turn,
            cancel: self.cancel.child_token(),
            budget: self.budget.cloned(),
            nested: link.map(|l| l as Arc<dyn std::any::Any + Send + Sync>),
        };
        let started = Instant::now();
        let result = self
            .tools
            .invoke(&name, args, ctx, self.limits.tool_timeout)
            .instrument(span.clone())
            .await;
        telemetry::record_tool_result(&span, &result);
        if let Err(error) = &result {
            tracing::warn!(
                parent: &span,
                kind = ?error.kind,
                detail = error.detail.as_deref().unwrap_or(""),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "tool call failed: {}",
                error.message
            );
        }
        ToolOutcome {
            call_id,
            result,
            duration: started.elapsed(),
        }
    }
}
