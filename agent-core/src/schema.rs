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
///
/// For schemas from outside (an MCP server, a file), use [`try_normalize`]: it refuses a
/// schema whose inlining would exceed the budgets. This function, on such a schema, returns
/// the input unchanged (its `$ref`s not inlined).
pub fn normalize(schema: Value) -> Value {
    try_normalize(schema.clone()).unwrap_or(schema)
}

/// Why a schema could not be normalised: inlining it would exceed a budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The inlined schema would hold more than [`MAX_SCHEMA_NODES`] JSON values (a few
    /// kilobytes of `$ref`s that each use the previous one twice expand exponentially).
    #[error("inlining its $refs would make the schema larger than {limit} JSON values")]
    TooLarge {
        /// The budget.
        limit: usize,
    },
    /// The inlined schema would nest deeper than [`MAX_SCHEMA_DEPTH`], or chain more than
    /// [`MAX_REF_CHAIN`] `$ref`s inside one another.
    #[error("the schema nests deeper than {limit} levels once its $refs are inlined")]
    TooDeep {
        /// The budget.
        limit: usize,
    },
}

/// The most JSON values a normalised schema may hold.
pub const MAX_SCHEMA_NODES: usize = 20_000;
/// The deepest a normalised schema may nest.
pub const MAX_SCHEMA_DEPTH: usize = 128;
/// The most `$ref`s that may be inlined inside one another along one path.
pub const MAX_REF_CHAIN: usize = 32;

/// [`normalize`], within budgets on size and depth, for schemas that come from outside the
/// program. Iterative: no input can exhaust the stack, and the work is bounded by the budget,
/// not by the input.
///
/// ```
/// use agent_core::schema::{try_normalize, SchemaError};
/// // Each definition uses the previous one twice: 2^25 values once inlined.
/// let mut defs = serde_json::Map::new();
/// defs.insert("d0".into(), serde_json::json!({"type": "string"}));
/// for i in 1..=25 {
///     let prev = format!("#/$defs/d{}", i - 1);
///     defs.insert(format!("d{i}"), serde_json::json!({
///         "type": "object",
///         "properties": {"a": {"$ref": prev}, "b": {"$ref": prev}}
///     }));
/// }
/// let schema = serde_json::json!({"type": "object", "properties": {"x": {"$ref": "#/$defs/d25"}}, "$defs": defs});
/// assert!(matches!(try_normalize(schema), Err(SchemaError::TooLarge { .. })));
/// ```
pub fn try_normalize(schema: Value) -> Result<Value, SchemaError> {
    let Value::Object(mut root) = schema else {
        return Ok(empty_object_schema());
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
    let mut inliner = Inliner::new(&defs);
    let root = inliner.expand(Value::Object(root), Vec::new())?;
    // Definitions that refer to themselves stay as definitions; they may need others.
    let mut kept = Map::new();
    while let Some(pointer) = inliner.queue.pop() {
        let Some(def) = defs.get(&pointer) else {
            continue;
        };
        inliner.charge(&pointer)?;
        let expanded = inliner.expand(def.clone(), vec![pointer.clone()])?;
        if let Some(name) = pointer.rsplit('/').next() {
            kept.insert(name.to_owned(), expanded);
        }
    }
    let Value::Object(mut root) = root else {
        return Ok(empty_object_schema());
    };
    if !kept.is_empty() {
        root.insert("$defs".into(), Value::Object(kept));
    }
    if !root.contains_key("type") && !root.contains_key("properties") && !has_combinator(&root) {
        return Ok(empty_object_schema());
    }
    if root.get("type").and_then(Value::as_str) == Some("object")
        && !root.contains_key("properties")
    {
        root.insert("properties".into(), Value::Object(Map::new()));
    }
    Ok(Value::Object(root))
}

fn has_combinator(schema: &Map<String, Value>) -> bool {
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .any(|k| schema.contains_key(*k))
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// The number of JSON values in `value`, counted without recursion.
fn node_count(value: &Value) -> usize {
    let mut count = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        count += 1;
        match v {
            Value::Object(map) => stack.extend(map.values()),
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    count
}

/// A container being rebuilt: its finished children, those still to do, and how many
/// `$ref`s entering it pushed onto the chain being inlined.
enum Frame {
    Object {
        done: Map<String, Value>,
        pending: serde_json::map::IntoIter,
        key: String,
        pushed: usize,
    },
    Array {
        done: Vec<Value>,
        pending: std::vec::IntoIter<Value>,
        pushed: usize,
    },
}

enum Step {
    Enter(Value),
    Return(Value),
}

/// Inlines `$ref`s with an explicit stack, charging every value it produces to one budget.
struct Inliner<'a> {
    defs: &'a Map<String, Value>,
    sizes: std::collections::HashMap<&'a str, usize>,
    nodes: usize,
    queue: Vec<String>,
    scheduled: std::collections::HashSet<String>,
}

impl<'a> Inliner<'a> {
    fn new(defs: &'a Map<String, Value>) -> Self {
        Inliner {
            sizes: defs
                .iter()
                .map(|(k, v)| (k.as_str(), node_count(v)))
                .collect(),
            defs,
            nodes: 0,
            queue: Vec::new(),
            scheduled: std::collections::HashSet::new(),
        }
    }

    /// Charges a definition's size before it is copied, so no copy can outgrow the budget.
    fn charge(&mut self, pointer: &str) -> Result<(), SchemaError> {
        let size = self.sizes.get(pointer).copied().unwrap_or(1);
        if self.nodes.saturating_add(size) > MAX_SCHEMA_NODES {
            return Err(SchemaError::TooLarge {
                limit: MAX_SCHEMA_NODES,
            });
        }
        Ok(())
    }

    fn expand(&mut self, value: Value, mut chain: Vec<String>) -> Result<Value, SchemaError> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut step = Step::Enter(value);
        loop {
            step = match step {
                Step::Enter(value) => {
                    self.nodes += 1;
                    if self.nodes > MAX_SCHEMA_NODES {
                        return Err(SchemaError::TooLarge {
                            limit: MAX_SCHEMA_NODES,
                        });
                    }
                    if stack.len() >= MAX_SCHEMA_DEPTH {
                        return Err(SchemaError::TooDeep {
                            limit: MAX_SCHEMA_DEPTH,
                        });
                    }
                    let (value, pushed) = self.resolve(value, &mut chain)?;
                    match value {
                        Value::Object(map) => {
                            stack.push(Frame::Object {
                                done: Map::new(),
                                pending: map.into_iter(),
                                key: String::new(),
                                pushed,
                            });
                            next_child(&mut stack, &mut chain)
                        }
                        Value::Array(items) => {
                            stack.push(Frame::Array {
                                done: Vec::with_capacity(items.len()),
                                pending: items.into_iter(),
                                pushed,
                            });
                            next_child(&mut stack, &mut chain)
                        }
                        other => {
                            chain.truncate(chain.len().saturating_sub(pushed));
                            Step::Return(other)
                        }
                    }
                }
                Step::Return(value) => {
                    match stack.last_mut() {
                        None => return Ok(value),
                        Some(Frame::Object { done, key, .. }) => {
                            done.insert(std::mem::take(key), value);
                        }
                        Some(Frame::Array { done, .. }) => done.push(value),
                    }
                    next_child(&mut stack, &mut chain)
                }
            };
        }
    }

    /// Replaces a `{"$ref": ..}` object by its definition (keys beside the `$ref`, such as a
    /// field's description, win), following chains of `$ref`s. A `$ref` to a definition
    /// already being inlined on this path stays a reference, and the definition is kept.
    /// Returns the value and how many `$ref`s were pushed onto the chain (a `$ref` to a
    /// `$ref` pushes both).
    fn resolve(
        &mut self,
        mut value: Value,
        chain: &mut Vec<String>,
    ) -> Result<(Value, usize), SchemaError> {
        let mut pushed = 0usize;
        while let Value::Object(map) = &mut value {
            let Some(Value::String(pointer)) = map.get("$ref") else {
                break;
            };
            let Some(def) = self.defs.get(pointer.as_str()) else {
                break; // not a local definition: left as it is
            };
            let pointer = pointer.clone();
            if chain.contains(&pointer) {
                if self.scheduled.insert(pointer.clone()) {
                    self.queue.push(pointer.clone());
                }
                if let Some(name) = pointer.rsplit('/').next() {
                    map.insert("$ref".into(), Value::String(format!("#/$defs/{name}")));
                }
                break;
            }
            if chain.len() >= MAX_REF_CHAIN {
                return Err(SchemaError::TooDeep {
                    limit: MAX_REF_CHAIN,
                });
            }
            self.charge(&pointer)?;
            let mut inlined = def.clone();
            map.remove("$ref");
            if let Value::Object(target) = &mut inlined {
                for (k, v) in std::mem::take(map) {
                    target.insert(k, v);
                }
            }
            value = inlined;
            chain.push(pointer);
            pushed += 1;
        }
        Ok((value, pushed))
    }
}

/// The next child of the innermost container, or that container finished.
fn next_child(stack: &mut Vec<Frame>, chain: &mut Vec<String>) -> Step {
    let Some(frame) = stack.last_mut() else {
        return Step::Return(Value::Null);
    };
    match frame {
        Frame::Object { pending, key, .. } => {
            if let Some((k, child)) = pending.next() {
                *key = k;
                return Step::Enter(child);
            }
        }
        Frame::Array { pending, .. } => {
            if let Some(child) = pending.next() {
                return Step::Enter(child);
            }
        }
    }
    match stack.pop() {
        Some(Frame::Object { done, pushed, .. }) => {
            chain.truncate(chain.len().saturating_sub(pushed));
            Step::Return(Value::Object(done))
        }
        Some(Frame::Array { done, pushed, .. }) => {
            chain.truncate(chain.len().saturating_sub(pushed));
            Step::Return(Value::Array(done))
        }
        None => Step::Return(Value::Null),
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

    /// Definitions d1..=n where each uses the previous one twice.
    fn doubling(n: usize) -> Value {
        let mut defs = Map::new();
        defs.insert("d0".into(), json!({"type": "string"}));
        for i in 1..=n {
            let prev = format!("#/$defs/d{}", i - 1);
            defs.insert(
                format!("d{i}"),
                json!({"type": "object", "properties": {"a": {"$ref": prev}, "b": {"$ref": prev}}}),
            );
        }
        json!({"type": "object", "properties": {"x": {"$ref": format!("#/$defs/d{n}")}}, "$defs": defs})
    }

    #[test]
    fn doubling_refs_are_refused_before_they_exhaust_memory() {
        let small = try_normalize(doubling(4)).unwrap();
        assert_eq!(
            small["properties"]["x"]["properties"]["a"]["properties"]["b"]["type"],
            "object"
        );
        assert!(!has_ref(&small));
        let raw = doubling(25); // 2^25 values once inlined, within the chain limit
        assert!(serde_json::to_string(&raw).unwrap().len() < 8_000);
        assert_eq!(
            try_normalize(raw),
            Err(SchemaError::TooLarge {
                limit: MAX_SCHEMA_NODES
            })
        );
    }

    #[test]
    fn a_long_ref_chain_is_refused_without_overflowing_the_stack() {
        let mut defs = Map::new();
        let n = 20_000;
        for i in 0..n {
            defs.insert(
                format!("c{i}"),
                json!({"type": "object", "properties": {"next": {"$ref": format!("#/$defs/c{}", i + 1)}}}),
            );
        }
        defs.insert(format!("c{n}"), json!({"type": "string"}));
        let raw = json!({"type": "object", "properties": {"start": {"$ref": "#/$defs/c0"}}, "$defs": defs});
        assert!(matches!(
            try_normalize(raw),
            Err(SchemaError::TooDeep { .. })
        ));
        // A chain of refs to refs is followed, and within the budget it is fine.
        let raw = json!({
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/A", "description": "kept"}},
            "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"type": "integer"}}
        });
        let s = try_normalize(raw).unwrap();
        assert_eq!(
            s["properties"]["a"],
            json!({"type": "integer", "description": "kept"})
        );
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
