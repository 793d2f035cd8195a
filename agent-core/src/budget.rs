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

/// Prices per million tokens, by model name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    /// US dollars per million input tokens.
    pub input_per_mtok: f64,
    /// US dollars per million output tokens.
    pub output_per_mtok: f64,
    /// US dollars per million cached input tokens (usually a fraction of the input price).
    pub cached_input_per_mtok: f64,
}

/// A price table. [`Prices::default`] knows a few common models (list prices when this was
/// written; check your provider's); set your own with [`Prices::set`]. A model without a
/// price counts as free, so a cost limit only binds models with a price.
#[derive(Clone, Debug, PartialEq)]
pub struct Prices {
    by_model: HashMap<String, Price>,
}

impl Default for Prices {
    fn default() -> Self {
        let mut prices = Prices {
            by_model: HashMap::new(),
        };
        for (model, input, output, cached) in [
            ("gpt-4o", 2.50, 10.00, 1.25),
            ("gpt-4o-mini", 0.15, 0.60, 0.075),
            ("claude-sonnet-4-5", 3.00, 15.00, 0.30),
            ("gemini-2.5-flash", 0.30, 2.50, 0.075),
            ("mistral-small-latest", 0.10, 0.30, 0.10),
            ("deepseek-chat", 0.27, 1.10, 0.07),
        ] {
            prices.set(
                model,
                Price {
                    input_per_mtok: input,
                    output_per_mtok: output,
                    cached_input_per_mtok: cached,
                },
            );
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

    /// The cost of some usage of a model, in US dollars.
    pub fn cost(&self, model: &str, usage: &Usage) -> f64 {
        let Some(p) = self.by_model.get(model) else {
            return 0.0;
        };
        let cached = usage.cached_input_tokens.min(usage.input_tokens) as f64;
        let uncached = usage.input_tokens as f64 - cached;
        (uncached * p.input_per_mtok
            + cached * p.cached_input_per_mtok
            + usage.output_tokens as f64 * p.output_per_mtok)
            / 1_000_000.0
    }
}

/// Limits and spending so far, shared by a run and the runs nested in it.
#[derive(Debug)]
pub struct BudgetTracker {
    budget: Budget,
    prices: Prices,
    started: Instant,
    requests: AtomicU32,
    tool_calls: AtomicU32,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    /// In millionths of a dollar.
    cost_micros: AtomicU64,
}

impl BudgetTracker {
    /// A tracker with these limits and the default price table; the clock starts now.
    pub fn new(budget: Budget) -> Self {
        Self::with_prices(budget, Prices::default())
    }

    /// The price table costs are counted at.
    pub(crate) fn prices(&self) -> &Prices {
        &self.prices
    }

    /// A tracker with its own price table.
    pub fn with_prices(budget: Budget, prices: Prices) -> Self {
        BudgetTracker {
            budget,
            prices,
            started: Instant::now(),
            requests: AtomicU32::new(0),
            tool_calls: AtomicU32::new(0),
            input_tokens: AtomicU64::new(0),
            output_tokens: AtomicU64::new(0),
            cost_micros: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Spending so far: model requests, tool calls, tokens, US dollars, time.
    pub fn spent(&self) -> Spent {
        Spent {
            model_requests: self.requests.load(Ordering::Relaxed),
            tool_calls: self.tool_calls.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            cost_usd: self.cost_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0,
            elapsed: self.started.elapsed(),
        }
    }

    /// Before a model call: would it break a limit? Counts the request, estimates its input
    /// at four characters a token.
    pub fn check_model_call(&self, model: &str, request: &ChatRequest) -> Result<(), Exceeded> {
        let spent = self.spent();
        let estimate = estimate_input_tokens(request);
        let b = &self.budget;
        check(
            b.max_model_requests.map(f64::from),
            f64::from(spent.model_requests + 1),
            BudgetKind::ModelRequests,
        )?;
        check(
            b.max_input_tokens.map(|l| l as f64),
            (spent.input_tokens + estimate) as f64,
            BudgetKind::InputTokens,
        )?;
        check(
            b.max_total_tokens.map(|l| l as f64),
            (spent.input_tokens + spent.output_tokens + estimate) as f64,
            BudgetKind::TotalTokens,
        )?;
        let estimated_cost = self.prices.cost(
            model,
            &Usage {
                input_tokens: estimate,
                ..Default::default()
            },
        );
        check(
            b.max_cost_usd,
            spent.cost_usd + estimated_cost,
            BudgetKind::Cost,
        )?;
        self.check_time()
    }

    /// After a model call: records its usage, then checks the limits against real numbers.
    pub fn record_model_call(&self, model: &str, usage: &Usage) -> Result<(), Exceeded> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.input_tokens
            .fetch_add(usage.input_tokens, Ordering::Relaxed);
        self.output_tokens
            .fetch_add(usage.output_tokens, Ordering::Relaxed);
        let cost = (self.prices.cost(model, usage) * 1_000_000.0).round() as u64;
        self.cost_micros.fetch_add(cost, Ordering::Relaxed);
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

    /// Before a batch of tool calls: counts them, checks the limit.
    pub fn record_tool_calls(&self, calls: u32) -> Result<(), Exceeded> {
        let total = self.tool_calls.fetch_add(calls, Ordering::Relaxed) + calls;
        check(
            self.budget.max_tool_calls.map(f64::from),
            f64::from(total),
            BudgetKind::ToolCalls,
        )?;
        self.check_time()
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
    /// US dollars.
    pub cost_usd: f64,
    /// Time since the tracker was made.
    pub elapsed: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_counts_cached_input_at_its_own_price() {
        let mut prices = Prices::empty();
        prices.set(
            "m",
            Price {
                input_per_mtok: 2.0,
                output_per_mtok: 10.0,
                cached_input_per_mtok: 0.5,
            },
        );
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cached_input_tokens: 400_000,
            reasoning_tokens: 0,
            ..Usage::default()
        };
        assert!((prices.cost("m", &usage) - (1.2 + 0.2 + 1.0)).abs() < 1e-9);
        assert_eq!(prices.cost("unknown", &usage), 0.0);
    }
}
