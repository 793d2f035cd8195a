//! The canonical form of a request, the fields a test chose to ignore, and the first place
//! two requests differ.
//!
//! Canonical means: the request as JSON with every object's keys in sorted order, so the
//! same request always has the same text whatever order its maps were built in. Nothing here
//! reads files or talks to a model.

use serde_json::{Map, Value};

/// The value with every object's keys sorted, recursively.
pub(crate) fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut sorted = Map::new();
            for (key, value) in entries {
                sorted.insert(key, canonical(value));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// A field path such as `messages/0/content` or `messages/*/tool_calls/*/id`: keys and array
/// indexes separated by `/`, `*` standing for any one key or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldPath(Vec<String>);

impl FieldPath {
    pub(crate) fn parse(path: &str) -> Self {
        FieldPath(
            path.trim_matches('/')
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Removes every field this path names from `value`.
    pub(crate) fn remove_from(&self, value: &mut Value) {
        remove(value, &self.0);
    }
}

fn remove(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match value {
        Value::Object(map) => {
            if rest.is_empty() {
                if first == "*" {
                    map.clear();
                } else {
                    map.remove(first);
                }
            } else if first == "*" {
                map.values_mut().for_each(|v| remove(v, rest));
            } else if let Some(v) = map.get_mut(first) {
                remove(v, rest);
            }
        }
        Value::Array(items) => {
            if rest.is_empty() {
                // An ignored array element is blanked, not removed, so the positions of
                // the others (and what they are compared with) stay the same.
                if first == "*" {
                    items.iter_mut().for_each(|v| *v = Value::Null);
                } else if let Some(v) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                    *v = Value::Null;
                }
            } else if first == "*" {
                items.iter_mut().for_each(|v| remove(v, rest));
            } else if let Some(v) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                remove(v, rest);
            }
        }
        _ => {}
    }
}

/// Where two values first differ: the path (`messages/1/content`) and both sides, shortened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Difference {
    pub(crate) path: String,
    pub(crate) expected: String,
    pub(crate) actual: String,
}

/// The first difference between `expected` and `actual` in key order (depth first), or
/// `None` when they are equal.
pub(crate) fn first_difference(expected: &Value, actual: &Value) -> Option<Difference> {
    diff(expected, actual, &mut Vec::new())
}

fn diff(expected: &Value, actual: &Value, path: &mut Vec<String>) -> Option<Difference> {
    // The children to compare, by key (objects: every key of either side, sorted) or index.
    let children: Vec<(String, Option<&Value>, Option<&Value>)> = match (expected, actual) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .map(|k| (k.clone(), a.get(k), b.get(k)))
                .collect()
        }
        (Value::Array(a), Value::Array(b)) => (0..a.len().max(b.len()))
            .map(|i| (i.to_string(), a.get(i), b.get(i)))
            .collect(),
        (x, y) if x == y => return None,
        (x, y) => return Some(difference(path, Some(x), Some(y))),
    };
    for (key, x, y) in children {
        path.push(key);
        let found = match (x, y) {
            (Some(x), Some(y)) => diff(x, y, path),
            (x, y) => Some(difference(path, x, y)),
        };
        path.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn difference(path: &[String], expected: Option<&Value>, actual: Option<&Value>) -> Difference {
    let show = |v: Option<&Value>| match v {
        None => "(absent)".to_owned(),
        Some(v) => shorten(&v.to_string(), 300),
    };
    Difference {
        path: if path.is_empty() {
            "(the whole request)".to_owned()
        } else {
            path.join("/")
        },
        expected: show(expected),
        actual: show(actual),
    }
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v = canonical(json!({"b": {"z": 1, "a": 2}, "a": [{"y": 1, "x": 2}]}));
        assert_eq!(v.to_string(), r#"{"a":[{"x":2,"y":1}],"b":{"a":2,"z":1}}"#);
    }

    #[test]
    fn the_first_difference_names_its_path() {
        let a = json!({"messages": [{"content": "hi"}, {"content": "one"}]});
        let b = json!({"messages": [{"content": "hi"}, {"content": "two"}]});
        let d = first_difference(&a, &b).map(|d| d.path);
        assert_eq!(d.as_deref(), Some("messages/1/content"));
        assert_eq!(first_difference(&a, &a), None);
    }

    #[test]
    fn ignored_paths_with_wildcards_are_removed() {
        let mut v = json!({"messages": [{"id": 1, "t": "a"}, {"id": 2, "t": "b"}], "date": "x"});
        FieldPath::parse("messages/*/id").remove_from(&mut v);
        FieldPath::parse("/date").remove_from(&mut v);
        assert_eq!(v, json!({"messages": [{"t": "a"}, {"t": "b"}]}));
    }
}
