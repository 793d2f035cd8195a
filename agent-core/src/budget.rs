//! Budgets: limits on what a run (and every run nested in it) may spend in model requests,
//! tool calls, tokens, money and time.
//!
//! A [`BudgetTracker`] holds the limits and the spending so far; it travels in the
//! [`RunContext`](crate::RunContext) and in each tool's context, so an agent used as a tool
//! spends from the same budget. The run's driver checks it before each model call (with an
//! estimate of the request's size) and after it (with the real usage), and before each
//! batch of tool calls, and reports what it found to the run's state machine, which decides.
//!
//! This module sits below tools and runs (it knows messages and requests, nothing above):
//! re-exported as `agent_core::run::{Budget, BudgetTracker, ..}`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::message::Usage;
use crate::model::ChatRequest;

/// What happens when a budget is exceeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBudgetExceeded {
    /// End with [`AgentError::BudgetExceeded`](crate::AgentError::BudgetExceeded), which
    /// carries the history.
    #[default]
    Fail,
    /// One last model call with tools disabled for the best answer so far (it may go over
    /// the budget by that one call).
    WrapUp,
}

/// The limits. `None` means no limit.
///
/// ```
/// use std::time::Duration;
/// use agent_core::run::Budget;
/// let budget = Budget { max_model_requests: Some(20), max_cost_usd: Some(0.50),
///     max_duration: Some(Duration::from_secs(120)), ..Default::default() };
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// Model calls.
    pub max_model_requests: Option<u32>,
    /// Tool calls.
    pub max_tool_calls: Option<u32>,
    /// Input tokens, over all calls.
    pub max_input_tokens: Option<u64>,
    /// Output tokens, over all calls.
    pub max_output_tokens: Option<u64>,
    /// Input plus output tokens.
    pub max_total_tokens: Option<u64>,
    /// Money, in US dollars, at the prices of the tracker's [`Prices`].
    pub max_cost_usd: Option<f64>,
    /// Wall-clock time since the tracker was made.
    pub max_duration: Option<Duration>,
    /// What happens when one is exceeded.
    pub on_exceeded: OnBudgetExceeded,
}

/// Which limit was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    /// [`Budget::max_model_requests`].
    ModelRequests,
    /// [`Budget::max_tool_calls`].
    ToolCalls,
    /// [`Budget::max_input_tokens`].
    InputTokens,
    /// [`Budget::max_output_tokens`].
    OutputTokens,
    /// [`Budget::max_total_tokens`].
    TotalTokens,
    /// [`Budget::max_cost_usd`].
    Cost,
    /// [`Budget::max_duration`].
    Duration,
}

impl fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetKind::ModelRequests => "model requests",
            BudgetKind::ToolCalls => "tool calls",
            BudgetKind::InputTokens => "input tokens",
            BudgetKind::OutputTokens => "output tokens",
            BudgetKind::TotalTokens => "total tokens",
            BudgetKind::Cost => "cost (USD)",
            BudgetKind::Duration => "duration (s)",
        })
    }
}

/// An exceeded limit: which, the limit, and what would have been (or was) spent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exceeded {
    /// Which limit.
    pub kind: BudgetKind,
    /// The limit.
    pub limit: f64,
    /// The spending that broke it.
    pub used: f64,
}

/// A model's prices, in US dollars per million tokens.
///
/// Input tokens served from the provider's cache, input tokens written to it, and output
/// tokens spent on reasoning are priced apart where the provider does:
///
/// ```
/// use agent_core::run::{Price, Prices};
/// let mut prices = Prices::default();
/// prices.set(
///     "my-model",
///     Price::new(3.00, 15.00).with_cached_input(0.30).with_cache_write(3.75),
/// );
/// assert!(prices.get("my-model").is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    /// US dollars per million input tokens.
    pub input_per_mtok: f64,
    /// US dollars per million output tokens.
    pub output_per_mtok: f64,
    /// US dollars per million cached input tokens (usually a fraction of the input price).
    pub cached_input_per_mtok: f64,
    /// US dollars per million input tokens written to the provider's prompt cache, when the
    /// provider charges them apart (Anthropic: 1.25 times the input price); `None`: the
    /// input price.
    pub cache_write_per_mtok: Option<f64>,
    /// US dollars per million reasoning tokens (a part of the output), when the provider
    /// prices them apart; `None`: the output price.
    pub reasoning_per_mtok: Option<f64>,
}

impl Price {
    /// Input and output prices per million tokens; cached input at the input price, cache
    /// writes at the input price, reasoning at the output price until set otherwise.
    pub fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Price {
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: input_per_mtok,
            cache_write_per_mtok: None,
            reasoning_per_mtok: None,
        }
    }

    /// Prices cached input tokens apart.
    #[must_use]
    pub fn with_cached_input(mut self, per_mtok: f64) -> Self {
        self.cached_input_per_mtok = per_mtok;
        self
    }

    /// Prices cache writes apart.
    #[must_use]
    pub fn with_cache_write(mut self, per_mtok: f64) -> Self {
        self.cache_write_per_mtok = Some(per_mtok);
        self
    }

    /// Prices reasoning tokens apart.
    #[must_use]
    pub fn with_reasoning(mut self, per_mtok: f64) -> Self {
        self.reasoning_per_mtok = Some(per_mtok);
        self
    }

    /// The cost of some usage at this price, in US dollars: plain input, cached input,
    /// cache writes, plain output and reasoning, each at its own price.
    pub fn cost_of(&self, usage: &Usage) -> f64 {
        let input = usage.input_tokens as f64;
        let cached = usage.cached_input_tokens.min(usage.input_tokens) as f64;
        let written = (usage.cache_write_input_tokens as f64).min(input - cached);
        let plain = input - cached - written;
        let reasoning = usage.reasoning_tokens.min(usage.output_tokens) as f64;
        let output = usage.output_tokens as f64 - reasoning;
        (plain * self.input_per_mtok
            + cached * self.cached_input_per_mtok
            + written * self.cache_write_per_mtok.unwrap_or(self.input_per_mtok)
            + output * self.output_per_mtok
            + reasoning * self.reasoning_per_mtok.unwrap_or(self.output_per_mtok))
            / 1_000_000.0
    }
}

/// A price table, by model name as the provider reports it.
///
/// [`Prices::default`] holds the providers' public list prices for some common models,
/// copied from their pricing pages (openai.com/api/pricing, anthropic.com/pricing,
/// ai.google.dev/gemini-api/docs/pricing, mistral.ai/pricing,
/// api-docs.deepseek.com/quick_start/pricing) as of 2025-09 (standard tier, prompts under
/// 200k tokens). Prices change: check yours, and set them with [`Prices::set`], which also
/// adds models.
///
/// A model missing from the table has no known price. Under a cost cap
/// ([`Budget::max_cost_usd`]) a call to it is refused before it is sent (never counted as
/// free); without one, its cost is reported as unknown (`None`), not zero.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    by_model: HashMap<String, Price>,
}

impl Default for Prices {
    fn default() -> Self {
        let mut prices = Prices::empty();
        // model, input, output, cached input, cache write ($ per million tokens)
        for (model, input, output, cached, write) in [
            ("gpt-4o", 2.50, 10.00, 1.25, None),
            ("gpt-4o-mini", 0.15, 0.60, 0.075, None),
            ("gpt-4.1", 2.00, 8.00, 0.50, None),
            ("gpt-4.1-mini", 0.40, 1.60, 0.10, None),
            ("o4-mini", 1.10, 4.40, 0.275, None),
            ("claude-sonnet-4-5", 3.00, 15.00, 0.30, Some(3.75)),
            ("claude-haiku-4-5", 1.00, 5.00, 0.10, Some(1.25)),
            ("claude-opus-4-1", 15.00, 75.00, 1.50, Some(18.75)),
            ("gemini-2.5-flash", 0.30, 2.50, 0.075, None),
            ("gemini-2.5-pro", 1.25, 10.00, 0.31, None),
            ("mistral-small-latest", 0.10, 0.30, 0.10, None),
            ("deepseek-chat", 0.27, 1.10, 0.07, None),
        ] {
            let mut price = Price::new(input, output).with_cached_input(cached);
            price.cache_write_per_mtok = write;
            prices.set(model, price);
        }
        prices
    }
}

impl Prices {
    /// A table with no prices.
    pub fn empty() -> Self {
        Prices {
            by_model: HashMap::new(),
        }
    }

    /// Sets (or overrides) a model's price.
    pub fn set(&mut self, model: impl Into<String>, price: Price) {
        self.by_model.insert(model.into(), price);
    }

    /// A model's price, if the table has one.
    pub fn get(&self, model: &str) -> Option<&Price> {
        self.by_model.get(model)
    }

    /// The cost of some usage of a model, in US dollars; `None` when the model has no
    /// price (unknown, not free).
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|p| p.cost_of(usage))
    }
}

/// The default price table, built once.
pub(crate) fn default_prices() -> &'static Prices {
    static DEFAULT: std::sync::OnceLock<Prices> = std::sync::OnceLock::new();
    DEFAULT.get_or_init(Prices::default)
}

/// Why the ledger refused a model call before it was sent.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// A limit of this tracker or of one above it would be exceeded by the call's worst
    /// case.
    Exceeded(Exceeded),
    /// A budget in the chain caps cost, and the model has no price.
    Unpriced {
        /// The model.
        model: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Exceeded(e) => write!(f, "the {} budget would be exceeded", e.kind),
            Refusal::Unpriced { model } => write!(
                f,
                "the model `{model}` has no known price and the run has a cost cap \
                 (Budget::max_cost_usd), so the call was not sent: give it a price with \
                 `Prices::set(\"{model}\", Price::new(input, output))` and \
                 `BudgetTracker::with_prices` (or `LlmAgentBuilder::prices`), or remove the cap"
            ),
        }
    }
}

/// What one reservation holds against every tracker of its chain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Hold {
    requests: u32,
    input_tokens: u64,
    output_tokens: u64,
    cost_micros: u64,
}

/// A model call's worst case, held against a chain of budgets until the call ends:
/// [`settle`](Self::settle) it with the real usage; dropped unsettled (the call failed or
/// was cancelled), it is released and nothing is spent.
#[derive(Debug)]
#[must_use = "a reservation is released when dropped; settle it with the real usage"]
pub struct Reservation {
    tracker: Arc<BudgetTracker>,
    hold: Hold,
    settled: bool,
}

impl Reservation {
    /// Books the call's real usage (at the price of the model that answered, which may be a
    /// fallback's) in place of the reservation, in every budget of the chain, then checks
    /// the chain's limits against the real spending.
    pub fn settle(mut self, model: &str, usage: &Usage) -> Result<(), Exceeded> {
        self.settled = true;
        self.tracker.book_call(model, usage, self.hold)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let _guard = self.tracker.lock();
        for t in self.tracker.chain() {
            t.release(self.hold);
        }
    }
}

fn to_micros(usd: f64) -> u64 {
    (usd * 1_000_000.0).round() as u64
}

/// Limits and spending so far, shared by a run and the runs nested in it; a tracker may
/// sit under a parent ([`child`](Self::child)), and then everything it books is booked in
/// every tracker above it too.
///
/// The ledger's rules: before each model call the driver [`reserve`](Self::reserve)s the
/// call's worst case (the request's estimated input tokens at the input price, plus its
/// `max_output_tokens` at the output price) against every budget of the chain at once,
/// under one lock per tree, counting what other calls in flight have reserved; a call that
/// would break a limit is refused before it is sent. After the call the reservation is
/// settled to the real usage. So runs sharing a budget (parallel sub-agents) cannot overshoot
/// it together. Two things can still go past a cap, by at most one call each: a request
/// without `max_output_tokens` reserves no output, and a real input larger than the estimate
/// (four characters a token) settles higher than reserved.
#[derive(Debug)]
pub struct BudgetTracker {
    budget: Budget,
    prices: Arc<Prices>,
    started: Instant,
    parent: Option<Arc<BudgetTracker>>,
    /// One lock for the whole tree: every reservation and settlement of the tree happens
    /// under it, so checks and bookings of calls in flight cannot interleave.
    ledger: Arc<Mutex<()>>,
    requests: AtomicU32,
    tool_calls: AtomicU32,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// In millionths of a dollar.
    cost_micros: AtomicU64,
    /// Model calls whose model had no price.
    unpriced_calls: AtomicU32,
    /// Held by calls in flight (changed under the ledger lock only).
    reserved_requests: AtomicU32,
    reserved_input: AtomicU64,
    reserved_output: AtomicU64,
    reserved_cost_micros: AtomicU64,
}

impl BudgetTracker {
    /// A tracker with these limits and the default price table; the clock starts now.
    pub fn new(budget: Budget) -> Self {
        Self::with_prices(budget, Prices::default())
    }

    /// A tracker with its own price table.
    pub fn with_prices(budget: Budget, prices: Prices) -> Self {
        Self::make(budget, Arc::new(prices), None)
    }

    /// A tracker under `parent`: its own limits apply, and everything it books (and
    /// reserves) is booked in `parent` and above, whose limits apply too. It prices with the
    /// parent's table.
    pub fn child(parent: Arc<BudgetTracker>, budget: Budget) -> Self {
        let prices = parent.prices.clone();
        Self::make(budget, prices, Some(parent))
    }

    fn make(budget: Budget, prices: Arc<Prices>, parent: Option<Arc<BudgetTracker>>) -> Self {
        let ledger = parent
            .as_ref()
            .map_or_else(|| Arc::new(Mutex::new(())), |p| p.ledger.clone());
        BudgetTracker {
            budget,
            prices,
            started: Instant::now(),
            parent,
            ledger,
            requests: AtomicU32::new(0),
            tool_calls: AtomicU32::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            cost_micros: AtomicU64::new(0),
            unpriced_calls: AtomicU32::new(0),
            reserved_requests: AtomicU32::new(0),
            reserved_input: AtomicU64::new(0),
            reserved_output: AtomicU64::new(0),
            reserved_cost_micros: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The price table.
    pub fn prices(&self) -> &Prices {
        &self.prices
    }

    /// The tracker above this one, if any.
    pub fn parent(&self) -> Option<&Arc<BudgetTracker>> {
        self.parent.as_ref()
    }

    /// Spending so far: model requests, tool calls, tokens, US dollars, time (settled calls
    /// only; reservations of calls in flight are not spending).
    pub fn spent(&self) -> Spent {
        Spent {
            model_requests: self.requests.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            cost_usd: self.cost_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0,
            unpriced_calls: self.unpriced_calls.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The lock guards no data of its own (the counters are atomics): a panic while it
        // was held leaves nothing half-done worth refusing over.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This tracker and every one above it.
    fn chain(&self) -> impl Iterator<Item = &BudgetTracker> {
        std::iter::successors(Some(self), |t| t.parent.as_deref())
    }

    /// Before a model call: reserves its worst case against every budget of the chain, or
    /// refuses it (a limit would break, or a cost cap meets a model without a price).
    /// Settle the reservation after the call; drop it if the call was not made.
    pub fn reserve(
        self: &Arc<Self>,
        model: &str,
        request: &ChatRequest,
    ) -> Result<Reservation, Refusal> {
        let input = estimate_input_tokens(request);
        let output = request.max_output_tokens.map_or(0, u64::from);
        let price = self.prices.get(model);
        let capped = self.chain().any(|t| t.budget.max_cost_usd.is_some());
        if price.is_none() && capped {
            return Err(Refusal::Unpriced {
                model: model.to_owned(),
            });
        }
        let worst = Usage {
            input_tokens: input,
            output_tokens: output,
            ..Usage::default()
        };
        let hold = Hold {
            requests: 1,
            input_tokens: input,
            output_tokens: output,
            cost_micros: price.map_or(0, |p| to_micros(p.cost_of(&worst))),
        };
        let _guard = self.lock();
        for t in self.chain() {
            t.check_with(hold).map_err(Refusal::Exceeded)?;
        }
        for t in self.chain() {
            t.hold(hold);
        }
        Ok(Reservation {
            tracker: self.clone(),
            hold,
            settled: false,
        })
    }

    /// Checks this tracker's limits as if `extra` were spent on top of what is spent and
    /// held.
    fn check_with(&self, extra: Hold) -> Result<(), Exceeded> {
        let b = &self.budget;
        let load32 = |a: &AtomicU32| u64::from(a.load(Ordering::Relaxed));
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let requests =
            load32(&self.requests) + load32(&self.reserved_requests) + u64::from(extra.requests);
        let input = load(&self.input_tokens) + load(&self.reserved_input) + extra.input_tokens;
        let output = load(&self.output_tokens) + load(&self.reserved_output) + extra.output_tokens;
        let cost = load(&self.cost_micros) + load(&self.reserved_cost_micros) + extra.cost_micros;
        check(
            b.max_model_requests.map(f64::from),
            requests as f64,
            BudgetKind::ModelRequests,
        )?;
        check(
            b.max_input_tokens.map(|l| l as f64),
            input as f64,
            BudgetKind::InputTokens,
        )?;
        check(
            b.max_output_tokens.map(|l| l as f64),
            output as f64,
            BudgetKind::OutputTokens,
        )?;
        check(
            b.max_total_tokens.map(|l| l as f64),
            (input + output) as f64,
            BudgetKind::TotalTokens,
        )?;
        check(b.max_cost_usd, cost as f64 / 1_000_000.0, BudgetKind::Cost)?;
        self.check_time()
    }

    fn hold(&self, h: Hold) {
        self.reserved_requests
            .fetch_add(h.requests, Ordering::Relaxed);
        self.reserved_input
            .fetch_add(h.input_tokens, Ordering::Relaxed);
        self.reserved_output
            .fetch_add(h.output_tokens, Ordering::Relaxed);
        self.reserved_cost_micros
            .fetch_add(h.cost_micros, Ordering::Relaxed);
    }

    fn release(&self, h: Hold) {
        let sub32 = |a: &AtomicU32, n: u32| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
        };
        sub32(&self.reserved_requests, h.requests);
        sub(&self.reserved_input, h.input_tokens);
        sub(&self.reserved_output, h.output_tokens);
        sub(&self.reserved_cost_micros, h.cost_micros);
    }

    fn book(&self, h: Hold, unpriced: bool) {
        self.requests.fetch_add(h.requests, Ordering::Relaxed);
        self.input_tokens
            .fetch_add(h.input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(h.output_tokens, Ordering::Relaxed);
        self.cost_micros.fetch_add(h.cost_micros, Ordering::Relaxed);
        if unpriced {
            self.unpriced_calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Checks the limits that real usage can break against what is spent.
    fn check_spent(&self) -> Result<(), Exceeded> {
        let spent = self.spent();
        let b = &self.budget;
        check(
            b.max_input_tokens.map(|l| l as f64),
            spent.input_tokens as f64,
            BudgetKind::InputTokens,
        )?;
        check(
            b.max_output_tokens.map(|l| l as f64),
            spent.output_tokens as f64,
            BudgetKind::OutputTokens,
        )?;
        check(
            b.max_total_tokens.map(|l| l as f64),
            (spent.input_tokens + spent.output_tokens) as f64,
            BudgetKind::TotalTokens,
        )?;
        check(b.max_cost_usd, spent.cost_usd, BudgetKind::Cost)?;
        self.check_time()
    }

    /// Before a model call, without reserving: would it break a limit of this tracker or
    /// one above it? (The driver [`reserve`](Self::reserve)s instead; this is a look.)
    pub fn check_model_call(&self, model: &str, request: &ChatRequest) -> Result<(), Exceeded> {
        let input = estimate_input_tokens(request);
        let cost = self.prices.get(model).map_or(0, |p| {
            let usage = Usage {
                input_tokens: input,
                ..Usage::default()
            };
            to_micros(p.cost_of(&usage))
        });
        let hold = Hold {
            requests: 1,
            input_tokens: input,
            output_tokens: 0,
            cost_micros: cost,
        };
        let _guard = self.lock();
        self.chain().try_for_each(|t| t.check_with(hold))
    }

    /// Books a model call's usage without a reservation (a resumed run's earlier spending,
    /// say) in this tracker and every one above it, then checks the limits.
    pub fn record_model_call(&self, model: &str, usage: &Usage) -> Result<(), Exceeded> {
        self.book_call(model, usage, Hold::default())
    }

    /// Books a call's real usage in this tracker and every one above it, in place of what
    /// it held, then checks the limits against the real spending.
    fn book_call(&self, model: &str, usage: &Usage, held: Hold) -> Result<(), Exceeded> {
        let cost = self.prices.cost(model, usage);
        let spend = Hold {
            requests: 1,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_micros: cost.map_or(0, to_micros),
        };
        let _guard = self.lock();
        let mut verdict = Ok(());
        for t in self.chain() {
            t.release(held);
            t.book(spend, cost.is_none());
            if verdict.is_ok() {
                verdict = t.check_spent();
            }
        }
        verdict
    }

    /// Before a batch of tool calls: counts them here and above, checks the limits.
    pub fn record_tool_calls(&self, calls: u32) -> Result<(), Exceeded> {
        let mut verdict = Ok(());
        for t in self.chain() {
            let total = t.tool_calls.fetch_add(calls, Ordering::Relaxed) + calls;
            if verdict.is_ok() {
                verdict = check(
                    t.budget.max_tool_calls.map(f64::from),
                    f64::from(total),
                    BudgetKind::ToolCalls,
                )
                .and_then(|()| t.check_time());
            }
        }
        verdict
    }

    fn check_time(&self) -> Result<(), Exceeded> {
        check(
            self.budget.max_duration.map(|d| d.as_secs_f64()),
            self.started.elapsed().as_secs_f64(),
            BudgetKind::Duration,
        )
    }
}

fn check(limit: Option<f64>, used: f64, kind: BudgetKind) -> Result<(), Exceeded> {
    match limit {
        Some(limit) if used > limit => Err(Exceeded { kind, limit, used }),
        _ => Ok(()),
    }
}

/// The request's size in tokens, four characters a token (crude, but it errs on the side of
/// stopping early), tool definitions included.
fn estimate_input_tokens(request: &ChatRequest) -> u64 {
    let tools: usize = request
        .tools
        .iter()
        .map(|t| t.description.len() + t.parameters.to_string().len())
        .sum();
    request.estimated_input_tokens() + (tools as u64).div_ceil(4)
}

/// What a [`BudgetTracker`] has counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spent {
    /// Model calls.
    pub model_requests: u32,
    /// Tool calls.
    pub tool_calls: u32,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// US dollars, over the calls whose model has a price.
    pub cost_usd: f64,
    /// Model calls whose model had no price (their cost is unknown, and not in `cost_usd`).
    pub unpriced_calls: u32,
    /// Time since the tracker was made.
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cached_input_at_its_own_price() {
        let mut prices = Prices::empty();
        prices.set("m", Price::new(2.0, 10.0).with_cached_input(0.5));
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_input_tokens: 400_000,
            reasoning_tokens: 0,
            ..Usage::default()
        };
        let cost = prices.cost("m", &usage).unwrap();
        assert!((cost - (1.2 + 0.2 + 1.0)).abs() < 1e-9);
        assert_eq!(prices.cost("unknown", &usage), None, "unknown, not free");
    }

    #[test]
    fn reasoning_and_cache_writes_are_priced_apart_when_the_price_says_so() {
        let price = Price::new(1.0, 10.0)
            .with_cached_input(0.1)
            .with_cache_write(2.0)
            .with_reasoning(20.0);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 500_000,
            cache_write_input_tokens: 250_000,
            reasoning_tokens: 250_000,
            estimated: false,
        };
        // 250k plain input, 500k cached, 250k written; 750k plain output, 250k reasoning.
        let expected = 0.25 + 0.05 + 0.5 + 7.5 + 5.0;
        assert!((price.cost_of(&usage) - expected).abs() < 1e-9);
        // Unset, reasoning costs the output price and writes the input price.
        let plain = Price::new(1.0, 10.0);
        assert!((plain.cost_of(&usage) - (1.0 + 10.0)).abs() < 1e-9);
    }

    #[test]
    fn a_dropped_reservation_is_released_and_a_settled_one_books_in_the_whole_chain() {
        let parent = Arc::new(BudgetTracker::new(Budget {
            max_model_requests: Some(1),
            ..Default::default()
        }));
        let child = Arc::new(BudgetTracker::child(parent.clone(), Budget::default()));
        let request = ChatRequest {
            messages: Arc::new(vec![crate::message::Message::user("hi")]),
            ..ChatRequest::default()
        };
        let held = child.reserve("gpt-4o", &request).unwrap();
        // The parent's one request is held: a sibling cannot take it.
        let sibling = BudgetTracker::child(parent.clone(), Budget::default());
        let sibling = Arc::new(sibling);
        assert!(matches!(
            sibling.reserve("gpt-4o", &request),
            Err(Refusal::Exceeded(Exceeded {
                kind: BudgetKind::ModelRequests,
                ..
            }))
        ));
        drop(held);
        let held = sibling.reserve("gpt-4o", &request).unwrap();
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 100,
            ..Usage::default()
        };
        held.settle("gpt-4o", &usage).unwrap();
        assert_eq!(parent.spent().model_requests, 1);
        assert_eq!(sibling.spent().input_tokens, 1_000);
        assert_eq!(child.spent().model_requests, 0);
        assert!((parent.spent().cost_usd - 0.0035).abs() < 1e-9);
    }
}
