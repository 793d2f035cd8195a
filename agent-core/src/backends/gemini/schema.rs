//! JSON Schema → the OpenAPI 3.0 subset Gemini's `functionDeclarations[].parameters`
//! accepts. One named step, applied only by the Gemini backend.
//!
//! Gemini fails the whole request on a key it does not know, so this keeps a whitelist:
//! `$ref` inlined (recursion cut at a depth), `$schema`, `title`, `additionalProperties` and
//! every other unknown keyword removed, type arrays turned into one type plus `nullable`
//! (or `anyOf` for several types), `null` branches of `anyOf`/`oneOf` turned into
//! `nullable`, `oneOf` into `anyOf`, a single `allOf` merged, `const` into a one-value
//! `enum`, `enum` kept only when its values are strings (with `format: "enum"`), and
//! `format` kept only where Gemini knows it.

use serde_json::{Map, Value, json};

/// Keys Gemini's `Schema` accepts.
const ALLOWED: &[&str] = &[
    "type",
    "format",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "propertyOrdering",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "anyOf",
    "default",
    "example",
];

/// How deep a recursive `$ref` is unrolled before it becomes a plain object.
const MAX_REF_DEPTH: usize = 4;

/// Converts a JSON Schema to Gemini's subset.
///
/// ```
/// use agent_core::backends::gemini::gemini_schema;
/// use serde_json::json;
/// let s = gemini_schema(&json!({
///     "$schema": "https://json-schema.org/draft/2020-12/schema",
///     "title": "Args", "type": "object", "additionalProperties": false,
///     "properties": {"days": {"type": ["integer", "null"], "format": "uint8", "minimum": 0}},
/// }));
/// assert_eq!(s, json!({"type": "object", "properties": {"days": {"type": "integer", "nullable": true, "minimum": 0}}}));
/// ```
pub fn gemini_schema(schema: &Value) -> Value {
    let defs = collect_defs(schema);
    convert(schema, &defs, 0)
}

fn collect_defs(schema: &Value) -> Map<String, Value> {
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(d)) = schema.get(key) {
            for (name, def) in d {
                defs.insert(format!("#/{key}/{name}"), def.clone());
            }
        }
    }
    defs
}

fn convert(node: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Value::Object(map) = node else {
        // `true` (anything) and other non-object schemas: a string is the safest stand-in.
        return json!({"type": "string"});
    };
    if let Some(Value::String(pointer)) = map.get("$ref") {
        let target = if pointer == "#" {
            None
        } else {
            defs.get(pointer.as_str())
        };
        let mut resolved = match target {
            Some(def) if depth < MAX_REF_DEPTH => convert(def, defs, depth + 1),
            _ => json!({"type": "object"}),
        };
        if let (Some(description), Value::Object(r)) = (map.get("description"), &mut resolved) {
            r.insert("description".into(), description.clone());
        }
        return resolved;
    }

    let mut out = Map::new();
    let mut nullable = false;

    // Type arrays: ["string", "null"] → "string" + nullable; several types → anyOf.
    match map.get("type") {
        Some(Value::Array(types)) => {
            let non_null: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
            nullable = non_null.len() < types.len();
            match non_null.as_slice() {
                [] => {}
                [one] => {
                    out.insert("type".into(), (*one).clone());
                }
                many => {
                    out.insert(
                        "anyOf".into(),
                        Value::Array(many.iter().map(|t| json!({"type": t})).collect()),
                    );
                }
            }
        }
        Some(Value::String(t)) if t == "null" => nullable = true,
        Some(t) => {
            out.insert("type".into(), t.clone());
        }
        None => {}
    }

    for (key, value) in map {
        match key.as_str() {
            "type" | "$ref" | "$defs" | "definitions" => {}
            "properties" => {
                if let Value::Object(props) = value {
                    let converted: Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.clone(), convert(v, defs, depth)))
                        .collect();
                    out.insert("properties".into(), Value::Object(converted));
                }
            }
            "items" => {
                out.insert("items".into(), convert(value, defs, depth));
            }
            "anyOf" | "oneOf" => {
                let branches: Vec<&Value> = value
                    .as_array()
                    .map(|a| a.iter().collect())
                    .unwrap_or_default();
                let is_null = |b: &&Value| b.get("type").and_then(Value::as_str) == Some("null");
                if branches.iter().any(is_null) {
                    nullable = true;
                }
                let rest: Vec<Value> = branches
                    .into_iter()
                    .filter(|b| !is_null(b))
                    .map(|b| convert(b, defs, depth))
                    .collect();
                match rest.len() {
                    0 => {}
                    1 => merge_into(&mut out, rest.into_iter().next()),
                    _ => {
                        out.insert("anyOf".into(), Value::Array(rest));
                    }
                }
            }
            "allOf" => {
                if let Some(parts) = value.as_array() {
                    for part in parts {
                        merge_into(&mut out, Some(convert(part, defs, depth)));
                    }
                }
            }
            "const" if value.is_string() => {
                out.insert("enum".into(), json!([value]));
            }
            "enum" => {
                let all_strings = value
                    .as_array()
                    .is_some_and(|v| v.iter().all(Value::is_string));
                if all_strings {
                    out.insert("enum".into(), value.clone());
                }
            }
            "format" => {}
            "nullable" => nullable |= value == &Value::Bool(true),
            "required" => {
                if let Some(required) = value.as_array().filter(|r| !r.is_empty()) {
                    out.insert("required".into(), Value::Array(required.clone()));
                }
            }
            other if ALLOWED.contains(&other) => {
                out.insert(other.to_owned(), value.clone());
            }
            _ => {} // additionalProperties, $schema, title, examples, const, if/then, ...
        }
    }

    // Formats Gemini knows: enum for strings, int32/int64, float/double, date-time.
    let kind = out.get("type").and_then(Value::as_str).map(str::to_owned);
    if out.contains_key("enum") {
        out.entry("type").or_insert(json!("string"));
        out.insert("format".into(), json!("enum"));
    } else if let Some(Value::String(format)) = map.get("format") {
        let known = match kind.as_deref() {
            Some("integer") => matches!(format.as_str(), "int32" | "int64"),
            Some("number") => matches!(format.as_str(), "float" | "double"),
            Some("string") => format == "date-time",
            _ => false,
        };
        if known {
            out.insert("format".into(), json!(format));
        }
    }
    if nullable {
        out.insert("nullable".into(), json!(true));
    }
    Value::Object(out)
}

/// Merges a converted schema into another (for `allOf` and single-branch `anyOf`); keys
/// already present win.
fn merge_into(out: &mut Map<String, Value>, other: Option<Value>) {
    if let Some(Value::Object(other)) = other {
        for (k, v) in other {
            out.entry(k).or_insert(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::schema_for;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Trip {
        /// Where from.
        from: Place,
        to: Option<Place>,
        mode: Mode,
        seats: Option<u8>,
        tags: Vec<String>,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Place {
        city: String,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Mode {
        Train,
        Plane,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Node {
        value: i32,
        next: Option<Box<Node>>,
    }

    fn keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if k != "properties" {
                        out.push(k.clone());
                    }
                    if k == "properties" {
                        if let Value::Object(props) = v {
                            props.values().for_each(|p| keys(p, out));
                        }
                    } else {
                        keys(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|i| keys(i, out)),
            _ => {}
        }
    }

    fn assert_only_allowed(schema: &Value) {
        let mut found = Vec::new();
        keys(schema, &mut found);
        for key in found {
            assert!(
                ALLOWED.contains(&key.as_str()),
                "`{key}` is not allowed: {schema:#}"
            );
        }
    }

    #[test]
    fn schemars_output_with_nested_optional_and_enum_fields() {
        let raw = schemars::SchemaGenerator::default()
            .into_root_schema_for::<Trip>()
            .to_value();
        let s = gemini_schema(&raw);
        assert_only_allowed(&s);
        assert_eq!(
            s["properties"]["from"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(s["properties"]["from"]["description"], "Where from.");
        assert_eq!(s["properties"]["to"]["nullable"], true);
        assert_eq!(s["properties"]["to"]["type"], "object");
        assert_eq!(s["properties"]["mode"]["enum"], json!(["train", "plane"]));
        assert_eq!(s["properties"]["mode"]["format"], "enum");
        assert_eq!(
            s["properties"]["seats"],
            json!({"type": "integer", "nullable": true, "minimum": 0, "maximum": 255})
        );
        assert_eq!(s["properties"]["tags"]["items"]["type"], "string");
        // Our own normalised schemas convert the same way.
        assert_eq!(gemini_schema(&schema_for::<Trip>()), s);
    }

    #[test]
    fn recursion_is_cut_at_a_depth() {
        let s = gemini_schema(&schema_for::<Node>());
        assert_only_allowed(&s);
        let mut depth = 0;
        let mut node = &s;
        while let Some(next) = node.pointer("/properties/next") {
            node = next;
            depth += 1;
        }
        assert!(depth <= MAX_REF_DEPTH + 1, "{s:#}");
    }

    #[test]
    fn hand_written_schemas_lose_what_gemini_rejects() {
        let s = gemini_schema(&json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "kind": {"const": "fixed"},
                "when": {"type": "string", "format": "date-time"},
                "size": {"type": "integer", "format": "int64", "exclusiveMinimum": 0},
                "level": {"enum": [1, 2, 3]},
                "either": {"type": ["string", "number"]},
                "maybe": {"anyOf": [{"$ref": "#/$defs/P"}, {"type": "null"}]},
                "anything": true
            },
            "required": ["id"],
            "$defs": {"P": {"type": "object", "properties": {"x": {"type": "number", "format": "double"}}}}
        }));
        assert_only_allowed(&s);
        assert_eq!(
            s["properties"]["id"]["anyOf"],
            json!([{"type": "string"}, {"type": "integer"}])
        );
        assert_eq!(
            s["properties"]["kind"],
            json!({"type": "string", "enum": ["fixed"], "format": "enum"})
        );
        assert_eq!(s["properties"]["when"]["format"], "date-time");
        assert_eq!(
            s["properties"]["size"],
            json!({"type": "integer", "format": "int64"})
        );
        assert!(s["properties"]["level"].get("enum").is_none());
        assert_eq!(
            s["properties"]["either"]["anyOf"].as_array().unwrap().len(),
            2
        );
        assert_eq!(s["properties"]["maybe"]["nullable"], true);
        assert_eq!(
            s["properties"]["maybe"]["properties"]["x"]["format"],
            "double"
        );
        assert_eq!(s["properties"]["anything"]["type"], "string");
        assert_eq!(s["required"], json!(["id"]));
    }
}
