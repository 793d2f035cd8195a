//! Chat backends, one module per wire protocol, the HTTP layer they share, and the registry
//! that turns a `provider:model` string into a model.
//!
//! Each backend's quirks live in its own module and nowhere else; the loop sees only the
//! message model of [`crate::message`].

pub mod anthropic;
pub mod gemini;
pub mod guard;
pub mod http;
pub mod local;
pub mod openai;
mod protocol;
pub mod registry;
pub mod responses;
pub mod sse;
mod stream;

pub use anthropic::Anthropic;
pub use gemini::Gemini;
pub use http::{ApiKey, HttpConfig, HttpVersion, RetryPolicy};
pub use openai::{Flavor, OpenAiCompatible};
pub use protocol::HttpModel;
pub use registry::{ModelFactory, ModelRegistry, ModelSpec};
pub use responses::OpenAiResponses;
