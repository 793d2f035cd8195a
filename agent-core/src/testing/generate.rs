//! Values generated from a JSON Schema: deterministic for a seed, and checked against the
//! schema before they are handed out, so a generated value is valid or an error says why.
//!
//! It covers the schemas tools publish (`schemars` output with `$ref`s inlined): types and
//! type lists, `enum`, `const`, `anyOf`/`oneOf`/`allOf`, object properties with `required`,
//! numeric bounds and `multipleOf`, string lengths, common `format`s, `pattern` (by trying
//! candidates), arrays with item counts and `uniqueItems`. It never reads files or the
//! network and never panics on a schema it does not understand: that is an `Err`.

use serde_json::{Map, Number, Value, json};

use crate::schema::ArgumentValidator;

/// A small deterministic random source (SplitMix64): the same seed, the same values, on
/// every platform.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    #[cfg(test)]
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// A seed mixed with a name, so each tool's values do not depend on the others'.
    pub(crate) fn for_name(seed: u64, name: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(seed ^ hash)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// The deepest nesting generated; deeper (recursive) schemas are an error.
const MAX_DEPTH: usize = 12;

/// How many differently seeded values are tried before giving up on a schema.
const ATTEMPTS: u64 = 16;

/// A value valid against `schema`, deterministic for `rng`'s seed.
pub(crate) fn valid_value(schema: &Value, rng: &mut Rng) -> Result<Value, String> {
    let validator = ArgumentValidator::new(schema).map_err(|e| format!("invalid schema: {e}"))?;
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        match value_for(schema, rng, 0) {
            Ok(value) => match validator.validate(&value) {
                Ok(()) => return Ok(value),
                Err(problems) => last = problems.join("; "),
            },
            Err(e) => last = e,
        }
    }
    Err(format!(
        "no valid value found in {ATTEMPTS} attempts (last problem: {last})"
    ))
}

fn value_for(schema: &Value, rng: &mut Rng, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("the schema nests deeper than 12 levels (recursive?)".into());
    }
    let obj = match schema {
        Value::Bool(true) => return Ok(json!(WORDS[rng.below(WORDS.len() as u64) as usize])),
        Value::Bool(false) => return Err("a `false` schema accepts nothing".into()),
        Value::Object(obj) => obj,
        _ => return Err(format!("`{schema}` is not a schema")),
    };
    if let Some(value) = obj.get("const") {
        return Ok(value.clone());
    }
    if let Some(Value::Array(options)) = obj.get("enum") {
        return options
            .get(rng.below(options.len() as u64) as usize)
            .cloned()
            .ok_or_else(|| "an empty `enum` accepts nothing".into());
    }
    if let Some(Value::Array(parts)) = obj.get("allOf") {
        let mut merged = without(obj, "allOf");
        for part in parts {
            if let Value::Object(part) = part {
                merge(&mut merged, part);
            }
        }
        return value_for(&Value::Object(merged), rng, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = obj.get(key) {
            // Prefer a branch that is not just `null`, so optional values get exercised.
            let useful: Vec<&Value> = branches
                .iter()
                .filter(|b| b.get("type") != Some(&json!("null")))
                .collect();
            let pool = if useful.is_empty() {
                branches.iter().collect()
            } else {
                useful
            };
            let Some(branch) = pool.get(rng.below(pool.len() as u64) as usize) else {
                return Err(format!("an empty `{key}` accepts nothing"));
            };
            let mut merged = without(obj, key);
            if let Value::Object(branch) = branch {
                merge(&mut merged, branch);
            }
            return value_for(&Value::Object(merged), rng, depth + 1);
        }
    }
    match type_of(obj, rng).as_str() {
        "object" => object(obj, rng, depth),
        "array" => array(obj, rng, depth),
        "string" => string(obj, rng),
        "integer" => integer(obj, rng),
        "number" => number(obj, rng),
        "boolean" => Ok(Value::Bool(rng.chance())),
        "null" => Ok(Value::Null),
        other => Err(format!("unknown type `{other}`")),
    }
}

fn without(obj: &Map<String, Value>, key: &str) -> Map<String, Value> {
    let mut copy = obj.clone();
    copy.remove(key);
    copy
}

/// Merges a sub-schema into a schema: properties and `required` are united, other keywords
/// of the sub-schema win.
fn merge(into: &mut Map<String, Value>, part: &Map<String, Value>) {
    for (key, value) in part {
        match (key.as_str(), into.get_mut(key), value) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                mine.extend(theirs.clone());
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                mine.extend(theirs.iter().cloned());
            }
            _ => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn type_of(obj: &Map<String, Value>, rng: &mut Rng) -> String {
    match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let useful: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            let pool = if useful.is_empty() { names } else { useful };
            pool.get(rng.below(pool.len() as u64) as usize)
                .map_or_else(|| "null".to_owned(), |t| (*t).to_owned())
        }
        _ if obj.contains_key("properties") => "object".into(),
        _ if obj.contains_key("items") => "array".into(),
        _ if obj.contains_key("minimum") || obj.contains_key("maximum") => "number".into(),
        _ => "string".into(),
    }
}

fn object(obj: &Map<String, Value>, rng: &mut Rng, depth: usize) -> Result<Value, String> {
    let empty = Map::new();
    let properties = obj
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let min = obj
        .get("minProperties")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    let mut out = Map::new();
    for (name, schema) in properties {
        let include = required.contains(&name.as_str()) || rng.chance() || out.len() < min;
        if include {
            out.insert(name.clone(), value_for(schema, rng, depth + 1)?);
        }
    }
    for name in required {
        if !out.contains_key(name) {
            // Required but not described: any value will do.
            out.insert(name.to_owned(), json!(WORDS[rng.below(10) as usize]));
        }
    }
    Ok(Value::Object(out))
}

fn array(obj: &Map<String, Value>, rng: &mut Rng, depth: usize) -> Result<Value, String> {
    let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
    let max = obj
        .get("maxItems")
        .and_then(Value::as_u64)
        .unwrap_or(min + 3)
        .min(min + 3);
    let count = min + rng.below(max.saturating_sub(min) + 1);
    let unique = obj.get("uniqueItems") == Some(&Value::Bool(true));
    let prefix = obj.get("prefixItems").and_then(Value::as_array);
    let items = obj.get("items").cloned().unwrap_or(Value::Bool(true));
    let mut out: Vec<Value> = Vec::new();
    let mut tries = 0;
    while (out.len() as u64) < count && tries < count * 8 + 8 {
        tries += 1;
        let schema = prefix.and_then(|p| p.get(out.len())).unwrap_or(&items);
        let value = value_for(schema, rng, depth + 1)?;
        if !unique || !out.contains(&value) {
            out.push(value);
        }
    }
    Ok(Value::Array(out))
}

fn string(obj: &Map<String, Value>, rng: &mut Rng) -> Result<Value, String> {
    let n = rng.below(1000);
    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
    let base = match obj.get("format").and_then(Value::as_str) {
        Some("date-time") => format!("2026-01-{:02}T10:{:02}:00Z", 1 + n % 28, n % 60),
        Some("date") => format!("2026-01-{:02}", 1 + n % 28),
        Some("time") => format!("10:{:02}:00Z", n % 60),
        Some("email") => format!("{word}{n}@example.com"),
        Some("uri" | "url" | "iri") => format!("https://example.com/{word}/{n}"),
        Some("hostname") => format!("{word}.example.com"),
        Some("ipv4") => format!("192.0.2.{}", n % 250 + 1),
        Some("ipv6") => format!("2001:db8::{:x}", n + 1),
        Some("uuid") => format!("00000000-0000-4000-8000-{:012x}", n),
        _ => format!("{word} {n}"),
    };
    let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = obj
        .get("maxLength")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |m| m as usize);
    let fit = |text: String| -> String {
        let mut text: String = text.chars().take(max).collect();
        while text.chars().count() < min {
            text.push('x');
        }
        text
    };
    let Some(pattern) = obj.get("pattern").and_then(Value::as_str) else {
        return Ok(Value::String(fit(base)));
    };
    let check = ArgumentValidator::new(&json!({"type": "string", "pattern": pattern}))
        .map_err(|e| format!("invalid pattern `{pattern}`: {e}"))?;
    let candidates = [
        base,
        word.to_owned(),
        n.to_string(),
        format!("{word}_{n}"),
        format!("{word}-{n}"),
        word.to_uppercase(),
        "a".into(),
        "0".into(),
        String::new(),
    ];
    candidates
        .into_iter()
        .map(fit)
        .find(|c| check.validate(&json!(c)).is_ok())
        .map(Value::String)
        .ok_or_else(|| format!("no generated string matches the pattern `{pattern}`"))
}

/// The bounds of a numeric schema: (low, high), inclusive, exclusive bounds nudged by `step`.
fn bounds(obj: &Map<String, Value>, step: f64) -> (f64, f64) {
    let get = |k: &str| obj.get(k).and_then(Value::as_f64);
    let low = get("minimum").or(get("exclusiveMinimum").map(|v| v + step));
    let high = get("maximum").or(get("exclusiveMaximum").map(|v| v - step));
    match (low, high) {
        (Some(l), Some(h)) => (l, h),
        (Some(l), None) => (l, l + 100.0),
        (None, Some(h)) => ((h - 100.0).max(h.min(0.0)), h),
        (None, None) => (0.0, 100.0),
    }
}

fn integer(obj: &Map<String, Value>, rng: &mut Rng) -> Result<Value, String> {
    let (low, high) = bounds(obj, 1.0);
    let (low, high) = (low.ceil() as i64, high.floor() as i64);
    if low > high {
        return Err(format!("no integer between {low} and {high}"));
    }
    let span = (high - low).min(1000) as u64;
    let mut value = low + rng.below(span + 1) as i64;
    if let Some(m) = obj
        .get("multipleOf")
        .and_then(Value::as_i64)
        .filter(|m| *m > 0)
    {
        value = (value / m) * m;
        if value < low {
            value += m;
        }
    }
    Ok(json!(value))
}

fn number(obj: &Map<String, Value>, rng: &mut Rng) -> Result<Value, String> {
    let (low, high) = bounds(obj, 1e-6);
    if low > high {
        return Err(format!("no number between {low} and {high}"));
    }
    // Quarters: exact in binary, readable in a test failure.
    let raw = low + (high - low) * rng.fraction();
    let value = ((raw * 4.0).round() / 4.0).clamp(low, high);
    Number::from_f64(value)
        .map(Value::Number)
        .ok_or_else(|| format!("{value} is not a JSON number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen_(schema: Value, seed: u64) -> Value {
        valid_value(&schema, &mut Rng::new(seed)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_same_seed_gives_the_same_value() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "array", "items": {"type": "number"}}}});
        assert_eq!(gen_(schema.clone(), 7), gen_(schema, 7));
    }

    #[test]
    fn bounds_enums_formats_and_patterns_are_respected() {
        let schema = json!({"type": "object", "required": ["n", "e", "d", "p", "s"],
            "properties": {
                "n": {"type": "integer", "minimum": 5, "exclusiveMaximum": 7, "multipleOf": 2},
                "e": {"enum": ["x", "y"]},
                "d": {"type": "string", "format": "date"},
                "p": {"type": "string", "pattern": "^[a-z]+$"},
                "s": {"type": "string", "minLength": 12, "maxLength": 12},
                "o": {"anyOf": [{"type": "null"}, {"type": "boolean"}]},
            },
            "additionalProperties": false});
        for seed in 0..50 {
            let v = gen_(schema.clone(), seed);
            assert_eq!(v["n"], json!(6));
            assert_eq!(v["s"].as_str().map(str::len), Some(12));
        }
    }

    #[test]
    fn an_impossible_schema_is_an_error_not_a_panic() {
        let schema = json!({"type": "string", "pattern": "^\\d{40}$"});
        assert!(valid_value(&schema, &mut Rng::new(1)).is_err());
        let schema = json!({"type": "integer", "minimum": 3, "maximum": 1});
        assert!(valid_value(&schema, &mut Rng::new(1)).is_err());
    }
}
