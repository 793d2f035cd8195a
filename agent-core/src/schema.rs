//! JSON Schemas for tool arguments: generated from Rust types, normalised into a form every
//! provider accepts, and used to validate a model's arguments before a tool sees them.
//!
//! Normalisation here is provider-neutral (inline `$ref`s, drop `$schema` and the type's
//! title, make sure the top level is an object). Provider subsets (Gemini's, OpenAI strict
//! mode) are separate named steps in the backends; this module never knows a provider.

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// The normalised JSON Schema of a type, ready to hand to a model as tool parameters.
///
/// ```
/// use agent_core::schema::schema_for;
/// #[derive(schemars::JsonSchema, serde::Deserialize)]
/// struct Args {
///     /// The city to look up.
///     city: String,
///     days: Option<u8>,
/// }
/// let schema = schema_for::<Args>();
/// assert_eq!(schema["type"], "object");
/// assert_eq!(schema["required"], serde_json::json!(["city"]));
/// assert!(schema.get("$schema").is_none());
/// ```
pub fn schema_for<T: JsonSchema>() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    normalize(schema.to_value())
}

/// Normalises a schema: inlines local `$ref`s (`#/$defs/..`, `#/definitions/..`), removes
/// `$schema` and the top-level `title`, and makes the top level an object schema (a schema
/// with no `type` and no `properties` becomes `{"type":"object","properties":{}}`).
///
/// A recursive type cannot be inlined; its `$ref`s stay, with only the definitions they need.
pub fn normalize(schema: Value) -> Value {
    let Value::Object(mut root) = schema else {
        return empty_object_schema();
    };
    root.remove("$schema");
    root.remove("title");
    let mut defs = Map::new();
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(d)) = root.remove(key) {
            for (name, def) in d {
                defs.insert(format!("#/{key}/{name}"), def);
            }
        }
    }
    let mut kept = Map::new();
    let mut stack = Vec::new();
    let mut root = Value::Object(root);
    inline_refs(&mut root, &defs, &mut stack, &mut kept);
    let Value::Object(mut root) = root else {
        return empty_object_schema();
    };
    if !kept.is_empty() {
        let mut d = Map::new();
        for (pointer, def) in kept {
            if let Some(name) = pointer.rsplit('/').next() {
                d.insert(name.to_owned(), def);
            }
        }
        root.insert("$defs".into(), Value::Object(d));
    }
    if !root.contains_key("type") && !root.contains_key("properties") && !has_combinator(&root) {
        return empty_object_schema();
    }
    if root.get("type").and_then(Value::as_str) == Some("object")
        && !root.contains_key("properties")
    {
        root.insert("properties".into(), Value::Object(Map::new()));
    }
    Value::Object(root)
}

fn has_combinator(schema: &Map<String, Value>) -> bool {
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .any(|k| schema.contains_key(*k))
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// Replaces each local `$ref` with a copy of its definition, recursively. `stack` holds the
/// definitions being inlined (to detect recursion); `kept` collects those that must stay.
fn inline_refs(
    value: &mut Value,
    defs: &Map<String, Value>,
    stack: &mut Vec<String>,
    kept: &mut Map<String, Value>,
) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(pointer)) = map.get("$ref")
                && let Some(def) = defs.get(pointer.as_str())
            {
                let pointer = pointer.clone();
                if stack.contains(&pointer) {
                    // Recursive: keep the reference, make sure its target is kept, rewritten
                    // to the `$defs` location.
                    if !kept.contains_key(&pointer) {
                        kept.insert(pointer.clone(), Value::Null);
                        let mut def = def.clone();
                        inline_refs(&mut def, defs, stack, kept);
                        kept.insert(pointer.clone(), def);
                    }
                    if let Some(name) = pointer.rsplit('/').next() {
                        map.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
                    }
                    return;
                }
                let mut inlined = def.clone();
                stack.push(pointer);
                inline_refs(&mut inlined, defs, stack, kept);
                stack.pop();
                map.remove("$ref");
                if let Value::Object(inlined) = inlined {
                    for (k, v) in inlined {
                        // Keys next to the `$ref` (a field's description) win over the
                        // definition's.
                        map.entry(k).or_insert(v);
                    }
                }
                return;
            }
            for v in map.values_mut() {
                inline_refs(v, defs, stack, kept);
            }
        }
        Value::Array(items) => {
            for v in items {
                inline_refs(v, defs, stack, kept);
            }
        }
        _ => {}
    }
}

/// Checks tool arguments against a tool's parameter schema.
///
/// Compiled once per tool; checking is cheap. Its messages are written for the model: each
/// names the argument (as a JSON pointer) and what is wrong with it.
pub struct ArgumentValidator {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for ArgumentValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArgumentValidator").finish_non_exhaustive()
    }
}

impl ArgumentValidator {
    /// Compiles a schema. Fails with a readable reason when the schema itself is invalid.
    pub fn new(schema: &Value) -> Result<Self, String> {
        jsonschema::validator_for(schema)
            .map(|validator| ArgumentValidator { validator })
            .map_err(|e| e.to_string())
    }

    /// Validates arguments; on failure returns one line per problem (at most 8).
    pub fn validate(&self, args: &Value) -> Result<(), Vec<String>> {
        if self.validator.is_valid(args) {
            return Ok(());
        }
        let problems: Vec<String> = self
            .validator
            .iter_errors(args)
            .take(8)
            .map(|e| {
                let path = e.instance_path().as_str();
                if path.is_empty() {
                    format!("arguments: {e}")
                } else {
                    format!("`{path}`: {e}")
                }
            })
            .collect();
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Point {
        x: f64,
        y: f64,
    }

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Route {
        /// Where to start.
        from: Point,
        to: Point,
        via: Vec<Point>,
        mode: Mode,
    }

    #[derive(Deserialize, JsonSchema)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Mode {
        Walk,
        Drive,
    }

    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Tree {
        value: i32,
        children: Vec<Tree>,
    }

    fn has_ref(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.contains_key("$ref") || m.values().any(has_ref),
            Value::Array(a) => a.iter().any(has_ref),
            _ => false,
        }
    }

    #[test]
    fn nested_types_are_inlined_without_refs_or_schema_keyword() {
        let s = schema_for::<Route>();
        assert!(!has_ref(&s), "{s:#}");
        assert!(s.get("$defs").is_none());
        assert!(s.get("$schema").is_none());
        assert!(s.get("title").is_none());
        assert_eq!(s["properties"]["from"]["type"], "object");
        assert_eq!(s["properties"]["from"]["description"], "Where to start.");
        assert_eq!(
            s["properties"]["via"]["items"]["properties"]["x"]["type"],
            "number"
        );
        assert_eq!(s["properties"]["mode"]["enum"], json!(["walk", "drive"]));
    }

    #[test]
    fn recursive_types_keep_working_references() {
        let s = schema_for::<Tree>();
        assert_eq!(s["type"], "object");
        let v = ArgumentValidator::new(&s).unwrap();
        assert!(
            v.validate(&json!({"value": 1, "children": [{"value": 2, "children": []}]}))
                .is_ok()
        );
        let errs = v
            .validate(&json!({"value": 1, "children": [{"value": "two", "children": []}]}))
            .unwrap_err();
        assert!(errs.join(" ").contains("/children/0/value"), "{errs:?}");
    }

    #[test]
    fn recursive_definitions_stay_as_defs_references() {
        let raw = json!({
            "type": "object",
            "properties": {"node": {"$ref": "#/$defs/Node"}},
            "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}}
        });
        let s = normalize(raw);
        assert_eq!(s["properties"]["node"]["type"], "object");
        assert_eq!(
            s["properties"]["node"]["properties"]["next"]["$ref"],
            "#/$defs/Node"
        );
        assert!(s["$defs"]["Node"].is_object());
        ArgumentValidator::new(&s).unwrap();
    }

    #[test]
    fn a_schema_without_type_becomes_an_empty_object_schema() {
        assert_eq!(
            normalize(json!({})),
            json!({"type": "object", "properties": {}})
        );
        assert_eq!(
            normalize(json!(true)),
            json!({"type": "object", "properties": {}})
        );
    }

    #[test]
    fn validator_names_the_offending_argument() {
        let v = ArgumentValidator::new(&schema_for::<Route>()).unwrap();
        let errs = v
            .validate(&json!({"from": {"x": 1, "y": "north"}, "to": {"x": 0, "y": 0}, "via": [], "mode": "fly"}))
            .unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("/from/y"), "{all}");
        assert!(all.contains("/mode"), "{all}");
    }
}
