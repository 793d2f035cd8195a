//! Keeping keys out of cassettes: known secrets are replaced by `<redacted>` in everything
//! recorded, and a cassette whose text still holds something shaped like a key is refused.
//!
//! The known secrets are the ones a test names plus the values of the process's
//! environment variables whose names end in `_API_KEY`, `_KEY`, `_TOKEN` or `_SECRET`.
//! Nothing here may print a secret: findings name the pattern and where, never the value.

use serde_json::Value;

/// What replaces a known secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// Prefixes of provider keys and bearer tokens, each followed by a long run of key
/// characters in a real key.
const KEY_PREFIXES: &[&str] = &[
    "sk-",
    "sk_live_",
    "sk_test_",
    "AIza",
    "ghp_",
    "gho_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "hf_",
    "gsk_",
    "Bearer ",
];

/// The shortest run of key characters after a prefix that counts as a key.
const MIN_KEY_BODY: usize = 20;

/// The secrets to remove from recordings.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// The secret values of the environment (see the module doc).
    pub(crate) fn from_env() -> Self {
        let mut secrets = Secrets::default();
        for (name, value) in std::env::vars() {
            let upper = name.to_ascii_uppercase();
            if ["_API_KEY", "_KEY", "_TOKEN", "_SECRET"]
                .iter()
                .any(|s| upper.ends_with(s))
            {
                secrets.add(value);
            }
        }
        secrets
    }

    /// Adds a secret; values shorter than 8 characters are too common to be replaced safely
    /// and are ignored.
    pub(crate) fn add(&mut self, secret: impl Into<String>) {
        let secret = secret.into().trim().to_owned();
        if secret.chars().count() >= 8 && !self.0.contains(&secret) {
            self.0.push(secret);
            // Longest first, so a key that contains another is replaced whole.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds every secret of `other`.
    pub(crate) fn absorb(&mut self, other: Secrets) {
        other.0.into_iter().for_each(|s| self.add(s));
    }

    /// Replaces every known secret in every string (and object key) of `value`.
    pub(crate) fn scrub(&self, value: &mut Value) {
        if self.0.is_empty() {
            return;
        }
        match value {
            Value::String(text) => {
                if let Some(clean) = self.scrub_text(text) {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.scrub(&mut v);
                    let key = self.scrub_text(&key).unwrap_or(key);
                    map.insert(key, v);
                }
            }
            _ => {}
        }
    }

    fn scrub_text(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for secret in &self.0 {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), REDACTED));
            }
        }
        out
    }
}

/// The first thing in `text` shaped like a key: its prefix and byte offset (never the key).
pub(crate) fn find_key_pattern(text: &str) -> Option<(&'static str, usize)> {
    let bytes = text.as_bytes();
    for prefix in KEY_PREFIXES {
        let mut from = 0;
        while let Some(found) = text[from..].find(prefix) {
            let start = from + found;
            from = start + prefix.len();
            let after_word = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
            let body = bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-' || **b == b'_')
                .count();
            if after_word && body >= MIN_KEY_BODY {
                return Some((prefix, start));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_secrets_are_replaced_in_values_and_keys() {
        let mut secrets = Secrets::default();
        secrets.add("hunter2-hunter2");
        let mut v = json!({"a": ["x hunter2-hunter2 y"], "hunter2-hunter2": 1});
        secrets.scrub(&mut v);
        assert_eq!(v, json!({"a": ["x <redacted> y"], "<redacted>": 1}));
    }

    #[test]
    fn key_shapes_are_found_but_ordinary_words_are_not() {
        assert!(find_key_pattern("the key is sk-proj-abcdefghijklmnopqrstuvwx").is_some());
        assert!(find_key_pattern("Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6").is_some());
        assert_eq!(find_key_pattern("a task-abcdefghijklmnopqrstuvwxyz"), None);
        assert_eq!(find_key_pattern("sk-short"), None);
    }
}
