//! Golden output contracts: the JSON shapes keycanary promises to scripts and receivers
//! (README: "Fields are only ever added, never renamed or removed").
//!
//! A contract file (`tests/contracts/*.contract`) lists one field a line, `path: types`:
//! `views[].url: string`, `views[].edge: string|absent`, `last_round: object|null`.
//! `[]` steps into every element of an array. Types are `string`, `integer`, `number`,
//! `boolean`, `null`, `array`, `object`; `absent` lets some objects omit the field, yet the
//! output under test must carry it at least once, so deleting a field still fails. Fields
//! the contract does not list are allowed: contracts only grow.
//!
//! Test-only; included by the unit tests and, with `#[path]`, by `tests/it`.

use serde_json::Value;

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every way `value` breaks `contract`, one line each; empty when it keeps it.
pub fn violations(value: &Value, contract: &str) -> Vec<String> {
    violations_in(std::slice::from_ref(value), contract)
}

/// As [`violations`] for several outputs of one kind: each must keep the contract, and an
/// `absent`-able field must appear in at least one of them.
pub fn violations_in(values: &[Value], contract: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in contract.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((path, types)) = line.split_once(':') else {
            out.push(format!(
                "contract line {}: `{line}` is not `path: types`",
                n + 1
            ));
            continue;
        };
        let types: Vec<&str> = types.split('|').map(str::trim).collect();
        let may_be_absent = types.contains(&"absent");
        // The objects that should hold the last step, reached through every `[]`.
        let steps: Vec<&str> = path.trim().split('.').collect();
        let mut parents: Vec<&Value> = values.iter().collect();
        let mut broken = false;
        for step in &steps[..steps.len() - 1] {
            let (key, each) = match step.strip_suffix("[]") {
                Some(k) => (k, true),
                None => (*step, false),
            };
            let mut next = Vec::new();
            for p in parents {
                match p.get(key) {
                    Some(Value::Array(items)) if each => next.extend(items.iter()),
                    Some(v) if !each && v.is_object() => next.push(v),
                    // An optional parent (`null` or absent) has its own contract line.
                    Some(Value::Null) | None => {}
                    Some(v) => {
                        out.push(format!("{path}: `{key}` is {}", type_of(v)));
                        broken = true;
                    }
                }
            }
            parents = next;
        }
        if broken {
            continue;
        }
        let (last, each) = match steps[steps.len() - 1].strip_suffix("[]") {
            Some(k) => (k, true),
            None => (steps[steps.len() - 1], false),
        };
        let (mut seen, mut missing) = (0, false);
        for p in &parents {
            match p.get(last) {
                None if may_be_absent => {}
                None => {
                    out.push(format!("{path}: missing"));
                    missing = true;
                }
                Some(v) => {
                    seen += 1;
                    let values: Vec<&Value> = match (each, v) {
                        (true, Value::Array(items)) => items.iter().collect(),
                        (true, other) => {
                            out.push(format!("{path}: is {}, not an array", type_of(other)));
                            vec![]
                        }
                        (false, v) => vec![v],
                    };
                    for v in values {
                        let t = type_of(v);
                        let allowed =
                            types.contains(&t) || (t == "integer" && types.contains(&"number"));
                        if !allowed {
                            out.push(format!(
                                "{path}: is {} ({v}), the contract says {}",
                                type_of(v),
                                types.join("|")
                            ));
                        }
                    }
                }
            }
        }
        if seen == 0 && !missing {
            out.push(format!("{path}: {NEVER_PRESENT}"));
        }
    }
    out.dedup();
    out
}

/// Panics with every violation and what a violation means.
pub fn assert_keeps(what: &str, value: &Value, contract: &str) {
    assert_all_keep(what, std::slice::from_ref(value), contract);
}

/// [`assert_keeps`] over several outputs of one kind ([`violations_in`]).
pub fn assert_all_keep(what: &str, values: &[Value], contract: &str) {
    fail_on(what, values, violations_in(values, contract));
}

/// [`assert_keeps`] for an output the test does not choose (a daemon's answer, the
/// binary's): every field it carries, and every required field of the objects it has,
/// keeps its type, but a field under an empty array or an absent parent is not asked for.
/// The fixture tests of the same renderer ask for every field.
pub fn assert_served_keeps(what: &str, value: &Value, contract: &str) {
    let values = std::slice::from_ref(value);
    let mut v = violations_in(values, contract);
    v.retain(|l| !l.ends_with(NEVER_PRESENT));
    fail_on(what, values, v);
}

const NEVER_PRESENT: &str =
    "never present (the output under test must carry every contracted field)";

fn fail_on(what: &str, values: &[Value], v: Vec<String>) {
    assert!(
        v.is_empty(),
        "{what} breaks its published contract: removing, renaming or retyping a field breaks \
         the scripts and receivers that read it. A contract may only grow: add new fields \
         to the output and to its contract file, never change or remove a line.\n  {}\n\
         output: {values:#?}",
        v.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn violations_table() {
        let doc = json!({
            "views": [
                {"url": "u", "edge": "e", "age": 3, "kids": ["a"]},
                {"url": "v", "age": null, "kids": []}
            ],
            "last_round": null,
            "ratio": 0.5,
        });
        let check = |contract: &str, want: &[&str]| {
            let got = violations(&doc, contract);
            assert_eq!(got.len(), want.len(), "{contract}: {got:?}");
            for (g, w) in got.iter().zip(want) {
                assert!(g.contains(w), "{contract}: {g} should contain {w}");
            }
        };
        check("views[].url: string", &[]);
        check("views[].edge: string|absent", &[]);
        check("views[].edge: string", &["views[].edge: missing"]);
        check("views[].age: integer|null", &[]);
        check("views[].age: integer", &["is null"]);
        check("views[].kids[]: string", &[]);
        check("views[].kids[]: integer", &["is string"]);
        check("views[].cache: string|absent", &["never present"]);
        check("views[].url: integer", &["is string", "is string"]);
        check("last_round: object|null", &[]);
        check("last_round.number: integer", &["never present"]);
        check("ratio: number", &[]);
        check("ratio: integer", &["is number"]);
        check("views.url: string", &["`views` is array"]);
        check("# comment\n\nviews[].url: string", &[]);
        check("nonsense", &["not `path: types`"]);
        // Several outputs: each keeps the contract, an optional field shows up in one.
        let two = [json!({"a": 1, "b": "x"}), json!({"a": 2})];
        assert!(violations_in(&two, "a: integer\nb: string|absent").is_empty());
        let got = violations_in(&two, "b: string");
        assert_eq!(got, ["b: missing"]);
    }

    /// What a daemon serves need not exercise every field, but what it carries is held.
    #[test]
    fn served_outputs_skip_only_fields_they_cannot_carry() {
        let served = json!({"blocking": [], "safe": true});
        let contract = "safe: boolean\nblocking: array\nblocking[].code: string";
        assert_served_keeps("an answer", &served, contract);
        let panics = |v: Value| {
            std::panic::catch_unwind(|| assert_served_keeps("an answer", &v, contract)).is_err()
        };
        assert!(
            panics(json!({"blocking": []})),
            "a required field is missing"
        );
        assert!(panics(json!({"blocking": [], "safe": "yes"})), "retyped");
        assert!(
            panics(json!({"blocking": [{"kode": "x"}], "safe": true})),
            "renamed"
        );
        assert!(!panics(served.clone()));
    }
}
