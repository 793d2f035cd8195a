//! Chat backends, one module per wire protocol, and the registry that turns a
//! `provider:model` string into a model.
//!
//! Each backend's quirks live in its own module and nowhere else; the loop sees only the
//! message model of [`crate::message`].

pub mod registry;

pub use registry::{ModelFactory, ModelRegistry, ModelSpec};
