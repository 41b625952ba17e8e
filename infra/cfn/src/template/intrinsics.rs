//! Typed CloudFormation intrinsics (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::If`, pseudo
//! parameters), always written in long form so YAML and JSON say the same thing.

use std::collections::BTreeMap;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use super::LogicalId;

/// A pseudo parameter CloudFormation resolves at deploy time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pseudo {
    AccountId,
    Partition,
    Region,
    StackName,
    StackId,
    UrlSuffix,
}

impl Pseudo {
    pub fn name(self) -> &'static str {
        match self {
            Pseudo::AccountId => "AWS::AccountId",
            Pseudo::Partition => "AWS::Partition",
            Pseudo::Region => "AWS::Region",
            Pseudo::StackName => "AWS::StackName",
            Pseudo::StackId => "AWS::StackId",
            Pseudo::UrlSuffix => "AWS::URLSuffix",
        }
    }
}

/// A string-valued template expression: a literal or an intrinsic function.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Literal(String),
    /// `Ref` of a resource or parameter.
    Ref(LogicalId),
    Pseudo(Pseudo),
    GetAtt(LogicalId, String),
    /// `Fn::Sub` with only `${...}` references to the template's own names.
    Sub(String),
    /// `Fn::Sub` with its own variables.
    SubWith(String, BTreeMap<String, Expr>),
    Join(String, Vec<Expr>),
    /// `Fn::If` on a named condition.
    If(String, Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn lit(s: impl Into<String>) -> Self {
        Expr::Literal(s.into())
    }

    pub fn get_att(id: &LogicalId, attribute: &str) -> Self {
        Expr::GetAtt(id.clone(), attribute.to_owned())
    }

    /// This expression as a fragment of an `Fn::Sub` string, if it can be one: literals are
    /// escaped, `Ref`, `GetAtt` and pseudo parameters become `${...}`.
    pub fn as_sub_fragment(&self) -> Option<String> {
        match self {
            Expr::Literal(s) => Some(s.replace("${", "${!")),
            Expr::Ref(id) => Some(format!("${{{id}}}")),
            Expr::Pseudo(p) => Some(format!("${{{}}}", p.name())),
            Expr::GetAtt(id, attr) => Some(format!("${{{id}.{attr}}}")),
            Expr::Sub(s) => Some(s.clone()),
            Expr::SubWith(..) | Expr::Join(..) | Expr::If(..) => None,
        }
    }

    /// The literal string, if this is one.
    pub fn as_literal(&self) -> Option<&str> {
        match self {
            Expr::Literal(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Expr {
    fn from(s: &str) -> Self {
        Expr::Literal(s.to_owned())
    }
}

impl From<String> for Expr {
    fn from(s: String) -> Self {
        Expr::Literal(s)
    }
}

fn single<S: Serializer, V: Serialize + ?Sized>(s: S, key: &str, value: &V) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry(key, value)?;
    map.end()
}

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Expr::Literal(v) => s.serialize_str(v),
            Expr::Ref(id) => single(s, "Ref", id.as_str()),
            Expr::Pseudo(p) => single(s, "Ref", p.name()),
            Expr::GetAtt(id, attr) => single(s, "Fn::GetAtt", &(id.as_str(), attr.as_str())),
            Expr::Sub(t) => single(s, "Fn::Sub", t),
            Expr::SubWith(t, vars) => single(s, "Fn::Sub", &(t, vars)),
            Expr::Join(sep, parts) => single(s, "Fn::Join", &(sep, parts)),
            Expr::If(cond, a, b) => single(s, "Fn::If", &(cond.as_str(), a.as_ref(), b.as_ref())),
        }
    }
}

/// A condition expression for the template's `Conditions` section.
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionExpr {
    Equals(Expr, Expr),
    Not(Box<ConditionExpr>),
    And(Vec<ConditionExpr>),
    Or(Vec<ConditionExpr>),
    /// Another named condition.
    Condition(String),
}

impl Serialize for ConditionExpr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ConditionExpr::Equals(a, b) => single(s, "Fn::Equals", &(a, b)),
            ConditionExpr::Not(c) => single(s, "Fn::Not", &[c.as_ref()]),
            ConditionExpr::And(cs) => single(s, "Fn::And", cs),
            ConditionExpr::Or(cs) => single(s, "Fn::Or", cs),
            ConditionExpr::Condition(name) => single(s, "Condition", name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> LogicalId {
        LogicalId::new(s).unwrap()
    }

    #[test]
    fn intrinsics_are_long_form() {
        let cases = [
            (Expr::lit("x"), json!("x")),
            (Expr::Ref(id("Queue")), json!({"Ref": "Queue"})),
            (Expr::Pseudo(Pseudo::Region), json!({"Ref": "AWS::Region"})),
            (Expr::get_att(&id("Queue"), "Arn"), json!({"Fn::GetAtt": ["Queue", "Arn"]})),
            (Expr::Sub("a-${AWS::Region}".into()), json!({"Fn::Sub": "a-${AWS::Region}"})),
            (
                Expr::SubWith("${X}".into(), [("X".to_owned(), Expr::Ref(id("Q")))].into()),
                json!({"Fn::Sub": ["${X}", {"X": {"Ref": "Q"}}]}),
            ),
            (
                Expr::Join(":".into(), vec![Expr::lit("a"), Expr::Ref(id("B"))]),
                json!({"Fn::Join": [":", ["a", {"Ref": "B"}]]}),
            ),
            (
                Expr::If("IsProd".into(), Box::new(Expr::lit("a")), Box::new(Expr::lit("b"))),
                json!({"Fn::If": ["IsProd", "a", "b"]}),
            ),
        ];
        for (expr, want) in cases {
            assert_eq!(serde_json::to_value(&expr).unwrap(), want, "{expr:?}");
        }
    }

    #[test]
    fn yaml_uses_the_same_long_form() {
        let yaml = serde_yaml::to_string(&Expr::get_att(&id("Queue"), "Arn")).unwrap();
        assert_eq!(yaml, "Fn::GetAtt:\n- Queue\n- Arn\n");
    }

    #[test]
    fn conditions_serialize() {
        let c = ConditionExpr::And(vec![
            ConditionExpr::Equals(Expr::Ref(id("Env")), Expr::lit("prod")),
            ConditionExpr::Not(Box::new(ConditionExpr::Condition("Other".into()))),
        ]);
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"Fn::And": [{"Fn::Equals": [{"Ref": "Env"}, "prod"]}, {"Fn::Not": [{"Condition": "Other"}]}]})
        );
        let o = ConditionExpr::Or(vec![ConditionExpr::Condition("A".into())]);
        assert_eq!(serde_json::to_value(&o).unwrap(), json!({"Fn::Or": [{"Condition": "A"}]}));
    }

    #[test]
    fn sub_fragments_escape_literals() {
        assert_eq!(Expr::lit("a${b}").as_sub_fragment().unwrap(), "a${!b}");
        assert_eq!(Expr::Ref(id("T")).as_sub_fragment().unwrap(), "${T}");
        assert_eq!(Expr::get_att(&id("T"), "Arn").as_sub_fragment().unwrap(), "${T.Arn}");
        assert_eq!(Expr::Pseudo(Pseudo::AccountId).as_sub_fragment().unwrap(), "${AWS::AccountId}");
        assert!(Expr::Join(",".into(), vec![]).as_sub_fragment().is_none());
    }
}
