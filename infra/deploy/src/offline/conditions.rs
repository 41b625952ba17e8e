//! A template as CloudFormation would deploy it with its parameters' defaults: `Conditions`
//! evaluated, `Fn::If` resolved, `AWS::NoValue` dropped. What depends on a value only known at
//! deploy time (a parameter without a default, a pseudo parameter, a function this does not
//! evaluate) stays unknown, and the caller treats unknown as "either".

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Whether a resource or output is in the deployed stack, under its `Condition`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Present,
    /// Its condition is false, or it is not in the template at all.
    Absent,
    /// Its condition depends on something only known at deploy time.
    Unknown,
}

/// A template's conditions, evaluated once.
pub struct Conditions<'t> {
    template: &'t Value,
    values: BTreeMap<String, Option<bool>>,
}

impl<'t> Conditions<'t> {
    pub fn of(template: &'t Value) -> Self {
        let names = template.get("Conditions").and_then(Value::as_object).into_iter().flat_map(Map::keys);
        let values = names.map(|n| (n.clone(), named(template, n, &mut Vec::new()))).collect();
        Conditions { template, values }
    }

    /// The value of the condition `name`; `None` if unknown (or not defined).
    pub fn value(&self, name: &str) -> Option<bool> {
        self.values.get(name).copied().flatten()
    }

    /// Whether `entry` (a resource or an output) is deployed.
    pub fn presence(&self, entry: &Value) -> Presence {
        match entry.get("Condition") {
            None => Presence::Present,
            Some(c) => match c.as_str().and_then(|n| self.value(n)) {
                Some(true) => Presence::Present,
                Some(false) => Presence::Absent,
                None => Presence::Unknown,
            },
        }
    }

    /// `entry`'s condition spelled out: nested conditions inlined, parameters with a default
    /// replaced by it, so two templates' conditions compare by what they test, not their names.
    pub fn spelled_out(&self, entry: &Value) -> Option<Value> {
        let name = entry.get("Condition")?.as_str()?;
        Some(spell(self.template, &Value::Object(Map::from_iter([("Condition".into(), name.into())])), &mut Vec::new()))
    }

    /// `v` with every `Fn::If` whose condition is known replaced by its branch and
    /// `Ref: AWS::NoValue` removed from its object or list; `None` when `v` itself is no value.
    pub fn resolve(&self, v: &Value) -> Option<Value> {
        match v {
            Value::Object(o) if o.len() == 1 => {
                if o.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
                    return None;
                }
                if let Some([Value::String(c), yes, no]) = o.get("Fn::If").and_then(Value::as_array).map(Vec::as_slice)
                {
                    match self.value(c) {
                        Some(true) => return self.resolve(yes),
                        Some(false) => return self.resolve(no),
                        None => {}
                    }
                }
                Some(Value::Object(o.iter().filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?))).collect()))
            }
            Value::Object(o) => {
                Some(Value::Object(o.iter().filter_map(|(k, v)| Some((k.clone(), self.resolve(v)?))).collect()))
            }
            Value::Array(a) => Some(Value::Array(a.iter().filter_map(|v| self.resolve(v)).collect())),
            other => Some(other.clone()),
        }
    }
}

/// The condition `name`; `None` when unknown. `stack` holds the conditions being evaluated: a
/// cycle (which CloudFormation rejects) is unknown here rather than endless.
fn named(t: &Value, name: &str, stack: &mut Vec<String>) -> Option<bool> {
    if stack.iter().any(|n| n == name) {
        return None;
    }
    let definition = t.get("Conditions")?.get(name)?;
    stack.push(name.to_owned());
    let value = evaluate(t, definition, stack);
    stack.pop();
    value
}

/// A condition function: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`.
fn evaluate(t: &Value, expr: &Value, stack: &mut Vec<String>) -> Option<bool> {
    let (function, args) = single(expr)?;
    let all = |stack: &mut Vec<String>| -> Option<Vec<Option<bool>>> {
        Some(args.as_array()?.iter().map(|a| evaluate(t, a, stack)).collect())
    };
    match function {
        "Condition" => named(t, args.as_str()?, stack),
        "Fn::Not" => match args.as_array()?.as_slice() {
            [c] => evaluate(t, c, stack).map(|b| !b),
            _ => None,
        },
        // Three-valued: one false decides an And whatever the unknowns, one true an Or.
        "Fn::And" => {
            let v = all(stack)?;
            if v.contains(&Some(false)) {
                Some(false)
            } else {
                v.iter().all(|b| *b == Some(true)).then_some(true)
            }
        }
        "Fn::Or" => {
            let v = all(stack)?;
            if v.contains(&Some(true)) {
                Some(true)
            } else {
                v.iter().all(|b| *b == Some(false)).then_some(false)
            }
        }
        "Fn::Equals" => match args.as_array()?.as_slice() {
            [a, b] => Some(scalar(t, a)? == scalar(t, b)?),
            _ => None,
        },
        _ => None,
    }
}

/// A value `Fn::Equals` compares, as the string CloudFormation compares: a literal, or a
/// parameter's default.
fn scalar(t: &Value, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(_) => {
            let (_, arg) = single(v).filter(|(f, _)| *f == "Ref")?;
            let parameter = t.get("Parameters")?.get(arg.as_str()?)?;
            match parameter.get("Default")? {
                Value::Array(_) | Value::Object(_) | Value::Null => None,
                d => scalar(t, d),
            }
        }
        _ => None,
    }
}

fn spell(t: &Value, expr: &Value, stack: &mut Vec<String>) -> Value {
    if let Some((function, arg)) = single(expr) {
        if let (Some(name), "Condition") = (arg.as_str(), function) {
            if !stack.iter().any(|n| n == name) {
                if let Some(definition) = t.get("Conditions").and_then(|c| c.get(name)) {
                    stack.push(name.to_owned());
                    let spelled = spell(t, definition, stack);
                    stack.pop();
                    return spelled;
                }
            }
        }
        if let Some(d) = (function == "Ref").then(|| scalar(t, expr)).flatten() {
            return Value::String(d);
        }
    }
    match expr {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), spell(t, v, stack))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(|v| spell(t, v, stack)).collect()),
        other => other.clone(),
    }
}

/// The function and argument of a one-key object (`{"Fn::Not": [...]}`).
fn single(v: &Value) -> Option<(&str, &Value)> {
    let o = v.as_object()?;
    let (k, a) = o.iter().next()?;
    (o.len() == 1).then_some((k.as_str(), a))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn template(conditions: Value) -> Value {
        json!({
            "Parameters": {
                "Email": {"Type": "String", "Default": ""},
                "Count": {"Type": "Number", "Default": 3},
                "Stage": {"Type": "String"},
            },
            "Conditions": conditions,
        })
    }

    fn value(condition: Value) -> Option<bool> {
        let t = template(json!({"C": condition}));
        Conditions::of(&t).value("C")
    }

    #[test]
    fn equals_compares_literals_and_parameter_defaults_as_strings() {
        assert_eq!(value(json!({"Fn::Equals": [{"Ref": "Email"}, ""]})), Some(true));
        assert_eq!(value(json!({"Fn::Equals": [{"Ref": "Email"}, "a@b.c"]})), Some(false));
        assert_eq!(value(json!({"Fn::Equals": [{"Ref": "Count"}, "3"]})), Some(true));
        assert_eq!(value(json!({"Fn::Equals": [true, "true"]})), Some(true));
    }

    #[test]
    fn what_is_known_only_at_deploy_time_is_unknown() {
        assert_eq!(value(json!({"Fn::Equals": [{"Ref": "Stage"}, "prod"]})), None, "no default");
        assert_eq!(value(json!({"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]})), None);
        assert_eq!(value(json!({"Fn::Equals": [{"Fn::Select": [0, ["a"]]}, "a"]})), None);
        assert_eq!(value(json!({"Fn::Equals": ["a"]})), None, "malformed");
        assert_eq!(value(json!({"Fn::Whatever": []})), None);
    }

    #[test]
    fn not_and_or_are_three_valued() {
        let unknown = json!({"Fn::Equals": [{"Ref": "Stage"}, "prod"]});
        let yes = json!({"Fn::Equals": ["a", "a"]});
        let no = json!({"Fn::Equals": ["a", "b"]});
        assert_eq!(value(json!({"Fn::Not": [yes]})), Some(false));
        assert_eq!(value(json!({"Fn::Not": [unknown]})), None);
        assert_eq!(value(json!({"Fn::And": [yes, no, unknown]})), Some(false));
        assert_eq!(value(json!({"Fn::And": [yes, unknown]})), None);
        assert_eq!(value(json!({"Fn::And": [yes, yes]})), Some(true));
        assert_eq!(value(json!({"Fn::Or": [no, yes, unknown]})), Some(true));
        assert_eq!(value(json!({"Fn::Or": [no, unknown]})), None);
        assert_eq!(value(json!({"Fn::Or": [no, no]})), Some(false));
    }

    #[test]
    fn conditions_nest_and_a_cycle_is_unknown() {
        let t = template(json!({
            "HasEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Email"}, ""]}]},
            "NoEmail": {"Fn::Not": [{"Condition": "HasEmail"}]},
            "A": {"Condition": "B"},
            "B": {"Condition": "A"},
        }));
        let c = Conditions::of(&t);
        assert_eq!((c.value("HasEmail"), c.value("NoEmail")), (Some(false), Some(true)));
        assert_eq!((c.value("A"), c.value("B")), (None, None));
        assert_eq!(c.value("Undefined"), None);
    }

    #[test]
    fn presence_follows_the_condition() {
        let t = template(json!({
            "Yes": {"Fn::Equals": ["a", "a"]},
            "No": {"Fn::Equals": ["a", "b"]},
            "Maybe": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        }));
        let c = Conditions::of(&t);
        assert_eq!(c.presence(&json!({"Type": "X"})), Presence::Present);
        assert_eq!(c.presence(&json!({"Condition": "Yes"})), Presence::Present);
        assert_eq!(c.presence(&json!({"Condition": "No"})), Presence::Absent);
        assert_eq!(c.presence(&json!({"Condition": "Maybe"})), Presence::Unknown);
        assert_eq!(c.presence(&json!({"Condition": ["not a name"]})), Presence::Unknown);
    }

    #[test]
    fn fn_if_takes_its_branch_and_no_value_disappears() {
        let t = template(json!({
            "Yes": {"Fn::Equals": ["a", "a"]},
            "Maybe": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        }));
        let c = Conditions::of(&t);
        let v = json!({
            "A": {"Fn::If": ["Yes", 1, 2]},
            "B": {"Fn::If": ["Yes", {"Ref": "AWS::NoValue"}, 2]},
            "C": [{"Fn::If": ["Yes", {"Ref": "AWS::NoValue"}, 2]}, 3],
            "D": {"Fn::If": ["Maybe", 1, 2]},
            "E": {"Nested": {"Fn::If": ["Yes", {"Fn::If": ["Yes", "deep", 0]}, 0]}},
        });
        assert_eq!(
            c.resolve(&v),
            Some(json!({"A": 1, "C": [3], "D": {"Fn::If": ["Maybe", 1, 2]}, "E": {"Nested": "deep"}}))
        );
        assert_eq!(c.resolve(&json!({"Ref": "AWS::NoValue"})), None);
    }

    #[test]
    fn a_condition_spelled_out_compares_by_what_it_tests() {
        let old = template(json!({"Prod": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}}));
        let new = template(json!({
            "IsProd": {"Condition": "Inner"},
            "Inner": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
        }));
        let (o, n) = (Conditions::of(&old), Conditions::of(&new));
        assert_eq!(o.spelled_out(&json!({"Condition": "Prod"})), n.spelled_out(&json!({"Condition": "IsProd"})));
        let other = template(json!({"Prod": {"Fn::Equals": [{"Ref": "Stage"}, "production"]}}));
        assert_ne!(
            o.spelled_out(&json!({"Condition": "Prod"})),
            Conditions::of(&other).spelled_out(&json!({"Condition": "Prod"}))
        );
        let defaulted = template(json!({"E": {"Fn::Equals": [{"Ref": "Email"}, "x"]}}));
        assert_eq!(
            Conditions::of(&defaulted).spelled_out(&json!({"Condition": "E"})),
            Some(json!({"Fn::Equals": ["", "x"]}))
        );
    }
}
