//! Resource-level differences between the deployed template and the local one.

/// Resource-level differences between two templates, as `+`/`-`/`~` lines.
pub fn template_diff(deployed: &serde_json::Value, local: &serde_json::Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let resources = |t: &serde_json::Value| {
        t.get("Resources").and_then(|r| r.as_object()).cloned().unwrap_or_else(|| empty.clone())
    };
    let (old, new) = (resources(deployed), resources(local));
    let mut lines = Vec::new();
    let ty = |r: &serde_json::Value| r.get("Type").and_then(|t| t.as_str()).unwrap_or_default().to_owned();
    for (id, r) in &new {
        match old.get(id) {
            None => lines.push(format!("+ {id} ({})", ty(r))),
            Some(o) if o != r => {
                let keys: std::collections::BTreeSet<&String> =
                    r.as_object().into_iter().chain(o.as_object()).flat_map(|m| m.keys()).collect();
                for k in keys {
                    let (a, b) = (o.get(k), r.get(k));
                    if a == b {
                        continue;
                    }
                    if let (Some(serde_json::Value::Object(pa)), Some(serde_json::Value::Object(pb))) = (a, b) {
                        let props: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
                        for p in props.into_iter().filter(|p| pa.get(*p) != pb.get(*p)) {
                            lines.push(format!("~ {id} ({}) {k}.{p}", ty(r)));
                        }
                    } else {
                        lines.push(format!("~ {id} ({}) {k}", ty(r)));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for (id, r) in &old {
        if !new.contains_key(id) {
            lines.push(format!("- {id} ({})", ty(r)));
        }
    }
    for section in ["Parameters", "Outputs"] {
        if deployed.get(section) != local.get(section) {
            lines.push(format!("~ {section}"));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn template_diff_names_added_removed_and_changed_properties() {
        let old = json!({"Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 30, "QueueName": "q"}},
            "Gone": {"Type": "AWS::SNS::Topic"},
            "Same": {"Type": "AWS::SNS::Topic"},
        }, "Outputs": {"A": 1}});
        let new = json!({"Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": 210, "QueueName": "q"}, "DeletionPolicy": "Retain"},
            "New": {"Type": "AWS::DynamoDB::Table"},
            "Same": {"Type": "AWS::SNS::Topic"},
        }, "Outputs": {"A": 1}});
        assert_eq!(
            template_diff(&old, &new),
            [
                "+ New (AWS::DynamoDB::Table)",
                "~ Q (AWS::SQS::Queue) DeletionPolicy",
                "~ Q (AWS::SQS::Queue) Properties.VisibilityTimeout",
                "- Gone (AWS::SNS::Topic)",
            ]
        );
        assert!(template_diff(&new, &new).is_empty());
    }
}
