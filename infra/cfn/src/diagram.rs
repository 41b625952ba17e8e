//! The architecture diagram, drawn from the stack's own model: resources as nodes; references
//! (a rule's target, a redrive policy, a mapping's source, a function's role) and the grants the
//! stack recorded (labelled with their actions; a resource policy's source as "only from") as
//! edges. Graphviz DOT, deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::constructs::iam::Principal;
use crate::constructs::Stack;
use crate::error::Result;

/// Every resource ID that `v` references with `Ref` or `Fn::GetAtt`, with the top-level
/// property holding it. Policy documents are skipped: grants are drawn from the record.
fn references(v: &Value, property: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(id)) = map.get("Ref") {
                out.push((id.clone(), property.to_owned()));
            }
            if let Some(Value::Array(a)) = map.get("Fn::GetAtt") {
                if let Some(Value::String(id)) = a.first() {
                    out.push((id.clone(), property.to_owned()));
                }
            }
            for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "PolicyDocument") {
                references(v, if property.is_empty() { k } else { property }, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, property, out)),
        _ => {}
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// The stack as a Graphviz digraph.
pub fn dot(stack: &Stack) -> Result<String> {
    let template = stack.to_template()?;
    let ids: BTreeSet<&str> = template.resources.keys().map(|k| k.as_str()).collect();
    let mut edges: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for (id, r) in &template.resources {
        let mut refs = Vec::new();
        references(&r.properties, "", &mut refs);
        for (target, property) in refs {
            if ids.contains(target.as_str()) && target != id.as_str() {
                edges.entry(id.to_string()).or_default().insert((target, property));
            }
        }
    }
    for grant in stack.grants() {
        let from = edges.entry(grant.policy.id.to_string()).or_default();
        if let Some(resource) = &grant.resource {
            from.insert((resource.id.to_string(), grant.actions.join("\\n")));
        }
        if let Principal::Service { source, .. } = &grant.principal {
            from.insert((source.id.to_string(), "only from".to_owned()));
        }
    }
    let mut out =
        format!("digraph {} {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n", quote(stack.name()));
    for (id, r) in &template.resources {
        out.push_str(&format!("  {} [label={}];\n", quote(id.as_str()), quote(&format!("{id}\\n{}", r.resource_type))));
    }
    for (id, targets) in &edges {
        for (target, label) in targets {
            out.push_str(&format!("  {} -> {} [label={}];\n", quote(id), quote(target), quote(label)));
        }
    }
    out.push_str("}\n");
    Ok(out)
}
