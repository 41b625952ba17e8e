//! The architecture diagram, drawn from the stack's own model: resources as nodes; references
//! (a rule's target, a redrive policy, a mapping's source, a function's role) and grants (a
//! role's statements, labelled with their actions) as edges. Graphviz DOT, deterministic.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::template::Template;

/// Every resource ID that `v` references with `Ref` or `Fn::GetAtt`, with the JSON path.
fn references(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("Ref") {
                out.push((id.clone(), path.to_owned()));
            }
            if let Some(Value::Array(a)) = map.get("Fn::GetAtt") {
                if let Some(Value::String(id)) = a.first() {
                    out.push((id.clone(), path.to_owned()));
                }
            }
            for (k, v) in map {
                references(v, &format!("{path}.{k}"), out);
            }
        }
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| references(v, &format!("{path}[{i}]"), out)),
        _ => {}
    }
}

/// The label of an edge found at `path` in `source`'s properties: a grant's actions, or the
/// top-level property that holds the reference.
fn label(source: &Value, path: &str) -> String {
    // `.Policies[0].PolicyDocument.Statement[1].Resource[0]` or `.PolicyDocument.Statement[0]...`
    if let Some(i) = path.find(".Statement[") {
        let rest = &path[i + ".Statement[".len()..];
        let index: usize = rest.split(']').next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let doc = if path.starts_with(".Policies[") {
            &source["Policies"][0]["PolicyDocument"]
        } else {
            &source["PolicyDocument"]
        };
        let statement = &doc["Statement"][index];
        if path.contains(".Condition") {
            return "only from".to_owned();
        }
        let actions: Vec<&str> =
            statement["Action"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        return actions.join("\\n");
    }
    path.trim_start_matches('.').split(['.', '[']).next().unwrap_or_default().to_owned()
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// The stack as a Graphviz digraph.
pub fn dot(name: &str, template: &Template) -> String {
    let ids: BTreeSet<&str> = template.resources.keys().map(|k| k.as_str()).collect();
    let mut out = format!("digraph {} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n", quote(name));
    for (id, r) in &template.resources {
        out.push_str(&format!("  {} [label={}];\n", quote(id.as_str()), quote(&format!("{id}\\n{}", r.resource_type))));
    }
    for (id, r) in &template.resources {
        let mut refs = Vec::new();
        references(&r.properties, "", &mut refs);
        let mut edges = BTreeSet::new();
        for (target, path) in refs {
            if ids.contains(target.as_str()) && target != id.as_str() {
                edges.insert((target, label(&r.properties, &path)));
            }
        }
        for (target, label) in edges {
            out.push_str(&format!("  {} -> {} [label={}];\n", quote(id.as_str()), quote(&target), quote(&label)));
        }
    }
    out.push_str("}\n");
    out
}
