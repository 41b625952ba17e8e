//! The CloudFormation template model: sections, resources and their attributes, deterministic
//! YAML and JSON. Constructs render into this; nothing here knows about AWS services.

mod intrinsics;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use intrinsics::{ConditionExpr, Expr, Pseudo};

use crate::error::Error;

/// A resource's, parameter's, condition's or output's logical ID: alphanumeric, at most 255
/// characters. Chosen explicitly, never hashed, so a refactor never silently replaces a resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalId(String);

impl LogicalId {
    pub const MAX_LEN: usize = 255;

    pub fn new(id: &str) -> Result<Self, Error> {
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > Self::MAX_LEN {
            Some("it is longer than 255 characters")
        } else if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            Some("only A-Z, a-z and 0-9 are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidLogicalId { id: id.to_owned(), reason }),
            None => Ok(LogicalId(id.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Ref` of this resource or parameter.
    pub fn reference(&self) -> Expr {
        Expr::Ref(self.clone())
    }

    /// `Fn::GetAtt` of one of this resource's attributes.
    pub fn get_att(&self, attribute: &str) -> Expr {
        Expr::get_att(self, attribute)
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `DeletionPolicy` / `UpdateReplacePolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Policy {
    Delete,
    Retain,
    Snapshot,
}

/// One entry of the `Resources` section.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub resource_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<LogicalId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    pub properties: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<Policy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_replace_policy: Option<Policy>,
}

/// The properties of one CloudFormation resource type, carrying the type's name (in the spirit
/// of k8s-openapi's `Resource`): the only place a type name is written.
pub trait ResourceProperties: Serialize {
    /// `AWS::<Service>::<Type>`.
    const TYPE: &'static str;
}

impl Resource {
    /// A resource whose properties are `properties` serialized, of their type.
    pub fn of<P: ResourceProperties>(properties: &P) -> Result<Self, Error> {
        let properties = serde_json::to_value(properties).map_err(|e| Error::Serialize(e.to_string()))?;
        Ok(Resource {
            resource_type: P::TYPE.to_owned(),
            condition: None,
            depends_on: Vec::new(),
            metadata: None,
            properties,
            deletion_policy: None,
            update_replace_policy: None,
        })
    }

    pub fn depends_on(mut self, id: &LogicalId) -> Self {
        if !self.depends_on.contains(id) {
            self.depends_on.push(id.clone());
            self.depends_on.sort();
        }
        self
    }

    pub fn with_policies(mut self, deletion: Policy, update_replace: Policy) -> Self {
        self.deletion_policy = Some(deletion);
        self.update_replace_policy = Some(update_replace);
        self
    }

    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    pub fn with_condition(mut self, condition: &str) -> Self {
        self.condition = Some(condition.to_owned());
        self
    }
}

/// The type of a template parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ParameterType {
    String,
    Number,
}

/// One entry of the `Parameters` section.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    #[serde(rename = "Type")]
    pub parameter_type: ParameterType,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint_description: Option<String>,
}

impl Parameter {
    pub fn string(description: &str) -> Self {
        Parameter {
            parameter_type: ParameterType::String,
            description: description.to_owned(),
            default: None,
            allowed_pattern: None,
            min_length: None,
            max_length: None,
            constraint_description: None,
        }
    }
}

/// One entry of the `Outputs` section.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    pub description: String,
    pub value: Expr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Export {
    pub name: Expr,
}

/// A whole template. Maps are ordered by logical ID, so output never depends on the order in
/// which constructs were added.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    #[serde(rename = "AWSTemplateFormatVersion")]
    pub format_version: &'static str,
    pub description: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<LogicalId, Parameter>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub conditions: BTreeMap<LogicalId, ConditionExpr>,
    pub resources: BTreeMap<LogicalId, Resource>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<LogicalId, Output>,
}

impl Serialize for LogicalId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Template {
    pub const FORMAT_VERSION: &'static str = "2010-09-09";

    pub fn new(description: &str) -> Self {
        Template {
            format_version: Self::FORMAT_VERSION,
            description: description.to_owned(),
            parameters: BTreeMap::new(),
            conditions: BTreeMap::new(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
        }
    }

    /// The resource with logical ID `id`, if there is one.
    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.iter().find(|(k, _)| k.as_str() == id).map(|(_, r)| r)
    }

    /// The template as YAML, ending with a newline.
    pub fn to_yaml(&self) -> Result<String, Error> {
        let yaml = serde_yaml::to_string(self).map_err(|e| Error::Serialize(e.to_string()))?;
        Ok(quote_dates(&yaml))
    }

    /// The template as pretty JSON, ending with a newline.
    pub fn to_json(&self) -> Result<String, Error> {
        let mut json = serde_json::to_string_pretty(self).map_err(|e| Error::Serialize(e.to_string()))?;
        json.push('\n');
        Ok(json)
    }
}

/// serde_yaml (YAML 1.2) leaves `2010-09-09` bare; YAML 1.1 readers such as PyYAML in the AWS
/// CLI read that as a date, not the string CloudFormation and IAM expect. Quote such scalars.
fn quote_dates(yaml: &str) -> String {
    fn is_date(v: &str) -> bool {
        let b = v.as_bytes();
        b.len() == 10
            && b.iter().enumerate().all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() })
    }
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let split = body
            .rfind(": ")
            .map(|i| i + 2)
            .or_else(|| body.trim_start().starts_with("- ").then(|| body.find("- ").map_or(0, |i| i + 2)));
        match split {
            Some(at) if is_date(&body[at..]) => {
                out.push_str(&body[..at]);
                out.push('\'');
                out.push_str(&body[at..]);
                out.push('\'');
                out.push_str(&line[body.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn date_like_scalars_are_quoted() {
        let yaml = "A: 2010-09-09\n  B: '2012-10-17'\n- 2020-01-01\nC: 2010-09-091\nD: x 2010-09-09\n";
        assert_eq!(
            quote_dates(yaml),
            "A: '2010-09-09'\n  B: '2012-10-17'\n- '2020-01-01'\nC: 2010-09-091\nD: x 2010-09-09\n"
        );
    }

    #[test]
    fn logical_ids_are_alphanumeric_and_bounded() {
        assert!(LogicalId::new("MetricsQueue1").is_ok());
        assert!(LogicalId::new(&"a".repeat(255)).is_ok());
        for bad in ["", "Metrics-Queue", "Metrics Queue", "Métrics", "a_b"] {
            let err = LogicalId::new(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
        let err = LogicalId::new(&"a".repeat(256)).unwrap_err().to_string();
        assert!(err.contains("255"), "{err}");
    }

    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct TestQueue {
        queue_name: Expr,
    }

    impl ResourceProperties for TestQueue {
        const TYPE: &'static str = "AWS::SQS::Queue";
    }

    #[test]
    fn yaml_and_json_say_the_same() {
        let mut t = Template::new("d");
        let q = LogicalId::new("Q").unwrap();
        t.parameters.insert(LogicalId::new("P").unwrap(), Parameter::string("p"));
        t.conditions.insert(
            LogicalId::new("C").unwrap(),
            ConditionExpr::Equals(Expr::Ref(LogicalId::new("P").unwrap()), Expr::lit("x")),
        );
        t.resources.insert(
            q.clone(),
            Resource::of(&TestQueue { queue_name: q.reference() })
                .unwrap()
                .depends_on(&LogicalId::new("B").unwrap())
                .depends_on(&LogicalId::new("A").unwrap())
                .with_policies(Policy::Retain, Policy::Retain)
                .with_condition("C"),
        );
        t.outputs.insert(
            LogicalId::new("O").unwrap(),
            Output { description: "o".into(), value: q.get_att("Arn"), condition: None, export: None },
        );
        let from_yaml: serde_json::Value = serde_yaml::from_str(&t.to_yaml().unwrap()).unwrap();
        let from_json: serde_json::Value = serde_json::from_str(&t.to_json().unwrap()).unwrap();
        assert_eq!(from_yaml, from_json);
        assert_eq!(from_json["AWSTemplateFormatVersion"], "2010-09-09");
        assert_eq!(from_json["Resources"]["Q"]["DependsOn"], json!(["A", "B"]));
        assert_eq!(from_json["Resources"]["Q"]["DeletionPolicy"], "Retain");
        assert_eq!(from_json["Outputs"]["O"]["Value"], json!({"Fn::GetAtt": ["Q", "Arn"]}));
    }

    #[test]
    fn yaml_quotes_the_version_as_a_string() {
        let yaml = Template::new("d").to_yaml().unwrap();
        assert!(yaml.starts_with("AWSTemplateFormatVersion: '2010-09-09'\n"), "{yaml}");
    }
}
