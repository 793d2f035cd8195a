//! Keeping agents running when providers misbehave: [`FallbackModel`] (another model when
//! one fails for the provider's reasons) and [`SharedLimit`] (at most N requests in flight
//! and M a minute, shared by every agent of the process, waiting instead of eating 429s).
//!
//! Both wrap any [`ChatModel`](crate::ChatModel) and sit between the backends and the run:
//! they never change what a model says, only which model is asked and when.

pub mod fallback;
pub mod limit;

pub use fallback::{FallbackBuilder, FallbackModel};
pub use limit::{LimitedModel, SharedLimit, SharedLimitBuilder};
