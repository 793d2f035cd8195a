//! `"provider:model"` → `Arc<dyn ChatModel>`.
//!
//! One string selects a model everywhere (examples, tests, configuration): `openai:gpt-4o-mini`,
//! `mistral:mistral-small-latest`, `ollama:qwen2.5`. Providers register a factory here; the
//! registry never reads a key itself and never prints one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::error::{ModelError, ModelErrorKind};
use crate::model::ChatModel;

/// The environment variable examples read the model string from.
pub const AGENT_MODEL_ENV: &str = "AGENT_MODEL";

/// A parsed `provider:model` string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// The provider (`openai`, `anthropic`, ...), lower-cased.
    pub provider: String,
    /// The model name, as given (it may itself contain `:` or `/`, as in `ollama:qwen2.5:7b`).
    pub model: String,
}

impl ModelSpec {
    /// Parses `provider:model`; the provider is everything before the first `:`.
    ///
    /// ```
    /// use agent_core::ModelSpec;
    /// let spec = ModelSpec::parse("ollama:qwen2.5:7b").unwrap();
    /// assert_eq!((spec.provider.as_str(), spec.model.as_str()), ("ollama", "qwen2.5:7b"));
    /// assert!(ModelSpec::parse("gpt-4o").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let s = s.trim();
        match s.split_once(':') {
            Some((provider, model)) if !provider.is_empty() && !model.trim().is_empty() => {
                Ok(ModelSpec {
                    provider: provider.to_ascii_lowercase(),
                    model: model.trim().to_owned(),
                })
            }
            _ => Err(ModelError::new(
                ModelErrorKind::Configuration,
                format!(
                    "`{s}` is not a model string; use `provider:model`, e.g. `openai:gpt-4o-mini` \
                     or `ollama:qwen2.5`"
                ),
            )),
        }
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

/// Reads a configuration variable by name (the process environment, or a map in tests).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Builds a model of one provider from the model name; reads its key and endpoint from the
/// environment, and fails with [`ModelErrorKind::Configuration`] when they are missing.
pub type ModelFactory = Arc<dyn Fn(&str) -> Result<Arc<dyn ChatModel>, ModelError> + Send + Sync>;

/// Maps provider names to model factories.
///
/// ```
/// use std::sync::Arc;
/// use agent_core::{ModelRegistry, testing::ScriptedModel};
/// let mut registry = ModelRegistry::builtin();
/// registry.register("fake", Arc::new(|model: &str| Ok(Arc::new(ScriptedModel::named(model)) as _)));
/// let model = registry.create("fake:m1").unwrap();
/// assert_eq!(model.model(), "m1");
/// assert!(registry.create("nope:m1").is_err());
/// ```
#[derive(Clone, Default)]
pub struct ModelRegistry {
    factories: BTreeMap<String, ModelFactory>,
}

impl fmt::Debug for ModelRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.factories.keys()).finish()
    }
}

impl ModelRegistry {
    /// A registry with every backend compiled into this build, configured from the
    /// environment (keys and base URLs are read when a model is created).
    pub fn builtin() -> Self {
        Self::builtin_with_env(Arc::new(|name: &str| std::env::var(name).ok()))
    }

    /// Like [`builtin`](Self::builtin), reading variables through `lookup` instead of the
    /// process environment (for tests, or configuration from elsewhere).
    pub fn builtin_with_env(lookup: EnvLookup) -> Self {
        let mut registry = ModelRegistry::default();
        for preset in super::openai::PRESETS {
            let lookup = Arc::clone(&lookup);
            let provider = preset.provider;
            registry.register(
                provider,
                Arc::new(move |model: &str| {
                    super::openai::OpenAiCompatible::from_lookup(provider, model, &*lookup)
                        .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
                }),
            );
        }
        let anthropic_lookup = Arc::clone(&lookup);
        registry.register(
            "anthropic",
            Arc::new(move |model: &str| {
                super::anthropic::Anthropic::from_lookup(model, &*anthropic_lookup)
                    .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
            }),
        );
        let responses_lookup = Arc::clone(&lookup);
        registry.register(
            super::responses::PROVIDER,
            Arc::new(move |model: &str| {
                super::responses::OpenAiResponses::from_lookup(model, &*responses_lookup)
                    .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
            }),
        );
        let gemini_lookup = Arc::clone(&lookup);
        registry.register(
            "gemini",
            Arc::new(move |model: &str| {
                super::gemini::Gemini::from_lookup(model, &*gemini_lookup)
                    .map(|m| Arc::new(m) as Arc<dyn ChatModel>)
            }),
        );
        let local_lookup = Arc::clone(&lookup);
        registry.register(
            "local",
            Arc::new(move |model: &str| create_local(model, &*local_lookup)),
        );
        registry
    }

    /// Adds (or replaces) a provider.
    pub fn register(&mut self, provider: impl Into<String>, factory: ModelFactory) {
        self.factories
            .insert(provider.into().to_ascii_lowercase(), factory);
    }

    /// The registered provider names.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Creates the model a `provider:model` string names.
    pub fn create(&self, model: &str) -> Result<Arc<dyn ChatModel>, ModelError> {
        let spec = ModelSpec::parse(model)?;
        match self.factories.get(&spec.provider) {
            Some(factory) => factory(&spec.model),
            None => {
                let known: Vec<&str> = self.providers().collect();
                let known = if known.is_empty() {
                    "none in this build".to_owned()
                } else {
                    known.join(", ")
                };
                Err(ModelError::new(
                    ModelErrorKind::Configuration,
                    format!(
                        "unknown provider `{}` in `{spec}`; available providers: {known}",
                        spec.provider
                    ),
                ))
            }
        }
    }

    /// The model named by `AGENT_MODEL`, or `None` when it is unset or empty.
    pub fn from_env(&self) -> Option<Result<Arc<dyn ChatModel>, ModelError>> {
        let value = std::env::var(AGENT_MODEL_ENV).ok()?;
        if value.trim().is_empty() {
            return None;
        }
        Some(self.create(&value))
    }
}

/// `local:NAME`: the model file, loaded once per process and shared.
#[cfg(feature = "local")]
fn create_local(
    model: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ChatModel>, ModelError> {
    use super::local::{LocalConfig, LocalModel, resolve_model_path};
    let home = lookup("HOME").map(std::path::PathBuf::from);
    let path = resolve_model_path(
        model,
        lookup("AGENT_LOCAL_MODEL").as_deref(),
        home.as_deref(),
    )
    .map_err(|e| e.with_provider("local", model))?;
    let mut config = LocalConfig::new(path);
    config.name = model.to_owned();
    if let Some(threads) = lookup("AGENT_LOCAL_THREADS") {
        let parsed = threads.trim().parse::<usize>().ok().filter(|&n| n > 0);
        config.threads = Some(parsed.ok_or_else(|| {
            ModelError::new(
                ModelErrorKind::Configuration,
                format!("AGENT_LOCAL_THREADS must be a positive number, not `{threads}`"),
            )
        })?);
    }
    if let Some(context) = lookup("AGENT_LOCAL_CONTEXT") {
        config.context_size = context
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n >= 512)
            .ok_or_else(|| {
                ModelError::new(
                    ModelErrorKind::Configuration,
                    format!("AGENT_LOCAL_CONTEXT must be a number of tokens (512 or more), not `{context}`"),
                )
            })?;
    }
    Ok(LocalModel::shared(config) as Arc<dyn ChatModel>)
}

/// `local:NAME` in a build without the `local` feature: say how to get it.
#[cfg(not(feature = "local"))]
fn create_local(
    model: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ChatModel>, ModelError> {
    Err(ModelError::new(
        ModelErrorKind::Configuration,
        "this build has no local models: build with `--features local` (see the README's \
         \"A local model\" section, or run scripts/local-setup.sh)",
    )
    .with_provider("local", model))
}
