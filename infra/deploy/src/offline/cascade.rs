//! A replacement does not stop at the replaced resource: its physical ID and attributes change,
//! so every resource that reads them through `Ref`, `Fn::GetAtt` or `Fn::Sub` changes too, and
//! is itself replaced where the reading property is create-only. CloudFormation shows these as
//! details with `Evaluation: Dynamic` and a `CausingEntity`; so does this.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::guard::{
    Action, Attribute, ChangeSource, ChangeType, Detail, Evaluation, Replacement, RequiresRecreation, ResourceChange,
    Target,
};

/// A reference from a property to a resource: its logical ID, and the attribute read
/// (`None` for `Ref`, which reads the physical ID).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    pub id: String,
    pub attribute: Option<String>,
}

/// Every reference `v` makes (to resources or parameters alike; pseudo parameters left out).
pub fn references(v: &Value) -> BTreeSet<Reference> {
    let mut out = BTreeSet::new();
    collect(v, &mut out);
    out
}

fn collect(v: &Value, out: &mut BTreeSet<Reference>) {
    match v {
        Value::Object(o) if o.len() == 1 => {
            let (function, arg) = o.iter().next().expect("one key");
            match (function.as_str(), arg) {
                ("Ref", Value::String(id)) => push(out, id, None),
                ("Fn::GetAtt", Value::Array(a)) => {
                    if let [Value::String(id), attribute] = a.as_slice() {
                        push(out, id, attribute.as_str());
                    }
                    collect(arg, out);
                }
                ("Fn::GetAtt", Value::String(s)) => {
                    if let Some((id, attribute)) = s.split_once('.') {
                        push(out, id, Some(attribute));
                    }
                }
                ("Fn::Sub", Value::String(s)) => sub(s, &BTreeSet::new(), out),
                ("Fn::Sub", Value::Array(a)) => {
                    if let [Value::String(s), Value::Object(vars)] = a.as_slice() {
                        sub(s, &vars.keys().map(String::as_str).collect(), out);
                        vars.values().for_each(|v| collect(v, out));
                    }
                }
                _ => collect(arg, out),
            }
        }
        Value::Object(o) => o.values().for_each(|v| collect(v, out)),
        Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
        _ => {}
    }
}

fn push(out: &mut BTreeSet<Reference>, id: &str, attribute: Option<&str>) {
    if !id.starts_with("AWS::") {
        out.insert(Reference { id: id.to_owned(), attribute: attribute.map(str::to_owned) });
    }
}

/// The `${Name}` and `${Id.Attr}` of a `Fn::Sub` string; `${!Literal}` is text, and a name
/// the substitution map defines is not a reference to the template.
fn sub(s: &str, local: &BTreeSet<&str>, out: &mut BTreeSet<Reference>) {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find('}') else { return };
        let name = rest[..end].trim();
        rest = &rest[end + 1..];
        if name.starts_with('!') || local.contains(name) {
            continue;
        }
        match name.split_once('.') {
            Some((id, attribute)) => push(out, id, Some(attribute)),
            None => push(out, name, None),
        }
    }
}

/// How sure a replacement is, for taking the strongest of two.
fn rank(r: Option<&Replacement>) -> u8 {
    match r {
        None | Some(Replacement::False) => 0,
        Some(Replacement::Conditional | Replacement::Unknown(_)) => 1,
        Some(Replacement::True) => 2,
    }
}

/// Whether `c` gives its resource a new physical ID: `Some(true)` surely, `Some(false)` maybe.
fn renews(c: &ResourceChange) -> Option<bool> {
    match (&c.action, &c.replacement) {
        (Action::Modify, Some(Replacement::True)) => Some(true),
        (Action::Modify, Some(Replacement::Conditional | Replacement::Unknown(_)) | None) | (Action::Dynamic, _) => {
            Some(false)
        }
        _ => None,
    }
}

/// Adds to `changes` what the replacements among them cause in `after`'s resources that
/// `kept` says exist before and after (a new resource reads the new values anyway), until
/// nothing more follows. `create_only` gives a type's create-only properties (`None`: any
/// property may be).
pub fn cascade(
    changes: &mut Vec<ResourceChange>,
    after: &BTreeMap<String, Value>,
    kept: impl Fn(&str) -> bool,
    create_only: impl Fn(&str) -> Option<&'static [&'static str]>,
) {
    loop {
        let renewed: BTreeMap<String, bool> =
            changes.iter().filter_map(|c| Some((c.logical_resource_id.clone(), renews(c)?))).collect();
        let mut grew = false;
        for (id, resource) in after.iter().filter(|(id, _)| kept(id)) {
            let ty = resource["Type"].as_str().unwrap_or_default();
            let properties = resource.get("Properties").and_then(Value::as_object).into_iter().flatten();
            for (property, value) in properties {
                for r in references(value) {
                    let Some(&sure) = renewed.get(&r.id).filter(|_| r.id != *id) else { continue };
                    let entity = r.attribute.as_ref().map_or_else(|| r.id.clone(), |a| format!("{}.{a}", r.id));
                    let index = match changes.iter().position(|c| c.logical_resource_id == *id) {
                        Some(i) => i,
                        None => {
                            let mut c = ResourceChange::new(Action::Modify, id, ty);
                            c.replacement = Some(Replacement::False);
                            changes.push(c);
                            changes.len() - 1
                        }
                    };
                    let change = &mut changes[index];
                    let seen = change.details.iter().any(|d| {
                        d.target.name.as_deref() == Some(property) && d.causing_entity.as_deref() == Some(&entity)
                    });
                    if seen {
                        continue;
                    }
                    let recreation = match create_only(ty).map(|p| p.contains(&property.as_str())) {
                        Some(true) => RequiresRecreation::Always,
                        Some(false) => RequiresRecreation::Never,
                        None => RequiresRecreation::Conditionally,
                    };
                    let replacement = match (&recreation, sure) {
                        (RequiresRecreation::Never, _) => Replacement::False,
                        (RequiresRecreation::Always, true) => Replacement::True,
                        _ => Replacement::Conditional,
                    };
                    if change.action == Action::Modify && rank(Some(&replacement)) > rank(change.replacement.as_ref()) {
                        change.replacement = Some(replacement);
                    }
                    change.details.push(Detail {
                        target: Target {
                            attribute: Some(Attribute::Properties),
                            name: Some(property.clone()),
                            path: Some(format!("/Properties/{property}")),
                            attribute_change_type: Some(ChangeType::Modify),
                            requires_recreation: Some(recreation),
                            ..Default::default()
                        },
                        evaluation: Some(Evaluation::Dynamic),
                        change_source: Some(if r.attribute.is_some() {
                            ChangeSource::ResourceAttribute
                        } else {
                            ChangeSource::ResourceReference
                        }),
                        causing_entity: Some(entity),
                    });
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    changes.sort_by(|a, b| a.logical_resource_id.cmp(&b.logical_resource_id));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn refs(v: Value) -> Vec<(String, Option<String>)> {
        references(&v).into_iter().map(|r| (r.id, r.attribute)).collect()
    }

    fn r(id: &str, attribute: Option<&str>) -> (String, Option<String>) {
        (id.to_owned(), attribute.map(str::to_owned))
    }

    #[test]
    fn ref_getatt_and_sub_are_references_pseudo_parameters_and_literals_are_not() {
        assert_eq!(refs(json!({"Ref": "Queue"})), [r("Queue", None)]);
        assert_eq!(refs(json!({"Ref": "AWS::Region"})), []);
        assert_eq!(refs(json!({"Fn::GetAtt": ["Queue", "Arn"]})), [r("Queue", Some("Arn"))]);
        assert_eq!(refs(json!({"Fn::GetAtt": "Table.StreamArn"})), [r("Table", Some("StreamArn"))]);
        assert_eq!(
            refs(json!({"Fn::Sub": "arn:${AWS::Partition}:x:${Queue}/${Table.Arn}/${!Literal}"})),
            [r("Queue", None), r("Table", Some("Arn"))]
        );
        assert_eq!(
            refs(json!({"Fn::Sub": ["${Local}-${Queue}", {"Local": {"Ref": "Topic"}}]})),
            [r("Queue", None), r("Topic", None)]
        );
        assert_eq!(refs(json!({"Fn::Sub": "unterminated ${Queue"})), []);
        assert_eq!(
            refs(json!({"Statement": [{"Resource": [{"Fn::GetAtt": ["A", "Arn"]}, "*"]}, {"Ref": "B"}]})),
            [r("A", Some("Arn")), r("B", None)]
        );
    }

    fn create_only(ty: &str) -> Option<&'static [&'static str]> {
        match ty {
            "Mapping" => Some(&["EventSourceArn"]),
            "Policy" | "Queue" => Some(&["QueueName"]),
            _ => None,
        }
    }

    fn replaced(id: &str, ty: &str, how: Replacement) -> ResourceChange {
        let mut c = ResourceChange::new(Action::Modify, id, ty);
        c.replacement = Some(how);
        c
    }

    fn run(mut changes: Vec<ResourceChange>, after: Value) -> Vec<ResourceChange> {
        let after: BTreeMap<String, Value> = serde_json::from_value(after).unwrap();
        cascade(&mut changes, &after, |id| id != "New", create_only);
        changes
    }

    #[test]
    fn a_create_only_reference_replaces_its_reader_in_place_ones_modify_it_and_it_goes_on() {
        let after = json!({
            "Queue": {"Type": "Queue", "Properties": {"QueueName": "q"}},
            "Mapping": {"Type": "Mapping", "Properties": {"EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]}}},
            "Policy": {"Type": "Policy", "Properties": {"Queues": [{"Ref": "Queue"}]}},
            "Reader": {"Type": "Unknown", "Properties": {"Source": {"Ref": "Mapping"}}},
            "New": {"Type": "Policy", "Properties": {"Queues": [{"Ref": "Queue"}]}},
            "Unrelated": {"Type": "Policy", "Properties": {"Queues": ["literal"]}},
        });
        let changes = run(vec![replaced("Queue", "Queue", Replacement::True)], after);
        let by: BTreeMap<&str, &ResourceChange> = changes.iter().map(|c| (c.logical_resource_id.as_str(), c)).collect();
        assert_eq!(by.keys().copied().collect::<Vec<_>>(), ["Mapping", "Policy", "Queue", "Reader"]);
        let mapping = by["Mapping"];
        assert_eq!(mapping.replacement, Some(Replacement::True));
        let d = &mapping.details[0];
        assert_eq!(d.causing_entity.as_deref(), Some("Queue.Arn"));
        assert_eq!(d.change_source, Some(ChangeSource::ResourceAttribute));
        assert_eq!(d.evaluation, Some(Evaluation::Dynamic));
        assert_eq!(d.target.requires_recreation, Some(RequiresRecreation::Always));
        let policy = by["Policy"];
        assert_eq!(policy.replacement, Some(Replacement::False));
        assert_eq!(policy.details[0].change_source, Some(ChangeSource::ResourceReference));
        // Through the mapping's replacement, onto a type whose properties are not known.
        assert_eq!(by["Reader"].replacement, Some(Replacement::Conditional));
        assert_eq!(by["Reader"].details[0].causing_entity.as_deref(), Some("Mapping"));
    }

    #[test]
    fn a_possible_replacement_cascades_as_possible_and_an_existing_change_keeps_its_details() {
        let after = json!({
            "Queue": {"Type": "Queue", "Properties": {}},
            "Mapping": {"Type": "Mapping", "Properties": {"EventSourceArn": {"Fn::GetAtt": ["Queue", "Arn"]}, "BatchSize": 5}},
        });
        let mut own = replaced("Mapping", "Mapping", Replacement::False);
        own.details.push(Detail {
            target: Target { name: Some("BatchSize".into()), ..Default::default() },
            ..Default::default()
        });
        let changes = run(vec![replaced("Queue", "Queue", Replacement::Conditional), own], after);
        assert_eq!(changes[0].logical_resource_id, "Mapping");
        assert_eq!(changes[0].replacement, Some(Replacement::Conditional));
        assert_eq!(changes[0].details.len(), 2);
    }

    #[test]
    fn nothing_replaced_nothing_added_and_a_self_reference_or_cycle_ends() {
        let after = json!({
            "A": {"Type": "Unknown", "Properties": {"X": {"Ref": "B"}, "Me": {"Ref": "A"}}},
            "B": {"Type": "Unknown", "Properties": {"X": {"Ref": "A"}}},
        });
        assert!(run(vec![], after.clone()).is_empty());
        let changes = run(vec![replaced("A", "Unknown", Replacement::True)], after);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].details.len(), 1, "A reads B, not itself");
        assert_eq!(changes[1].details.len(), 1);
    }
}
