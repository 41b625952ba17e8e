//! Lambda: `Function` (provided.al2023, arm64 or x86_64, code from a cargo-lambda asset, its own
//! log group and least-privilege role) here, and the SQS `EventSourceMapping` in
//! [`event_source`].

mod event_source;

pub use event_source::{EventSourceMapping, EventSourceMappingBuilder, MappingProperties};

use std::collections::BTreeMap;
use std::panic::Location;

use serde::Serialize;
use serde_json::json;

use super::cloudwatch::{Metric, Statistic};
use super::iam::{actions, Grantee, Role};
use super::logs::{LogGroup, Retention};
use super::{validate, ConstructRef, Kind, Stack};
use crate::error::{Error, Result};
use crate::template::{Expr, LogicalId, Parameter, Resource, ResourceProperties};

/// The one runtime: a Rust `bootstrap` binary on Amazon Linux 2023.
pub const RUNTIME: &str = "provided.al2023";

/// The template parameter naming the S3 bucket that holds every asset.
pub const ASSET_BUCKET_PARAMETER: &str = "AssetBucket";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Architecture {
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

impl Architecture {
    /// As Lambda and cargo-lambda name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        }
    }
}

/// Where a function's code comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Code {
    /// The zip cargo-lambda builds for binary `name`: `target/lambda/<name>/bootstrap.zip`.
    /// The template takes its S3 location as parameters, so synth never needs the zip and
    /// the same template serves every build.
    Asset { name: String },
    /// Code already in S3.
    S3 { bucket: Expr, key: Expr },
}

impl Code {
    pub fn asset(name: &str) -> Self {
        Code::Asset { name: name.to_owned() }
    }

    /// Where cargo-lambda writes the zip, relative to the workspace root.
    pub fn asset_path(name: &str) -> String {
        format!("target/lambda/{name}/bootstrap.zip")
    }
}

/// Environment variable names Lambda reserves for itself.
const RESERVED_ENV: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Builder of an `AWS::Lambda::Function` with its role (`<id>Role`) and log group
/// (`<id>LogGroup`). Defaults: arm64, 128 MB, 3 s, no reserved concurrency, two weeks of logs.
#[derive(Clone, Debug)]
pub struct FunctionBuilder {
    id: String,
    code: Code,
    name: Option<String>,
    description: Option<String>,
    architecture: Architecture,
    memory_mb: u32,
    timeout_secs: u32,
    reserved_concurrency: Option<u32>,
    environment: BTreeMap<String, Expr>,
    log_retention: Retention,
}

/// A built function: the handle mappings, grants and metrics take, and what tools read of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    construct: ConstructRef,
    role: ConstructRef,
    log_group: LogGroup,
    name: Option<String>,
    code: Code,
    architecture: Architecture,
    memory_mb: u32,
    timeout_secs: u32,
    reserved_concurrency: Option<u32>,
    environment: BTreeMap<String, Expr>,
    asset_parameters: Option<AssetParameters>,
}

/// The template parameters an asset's S3 location comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetParameters {
    pub bucket: LogicalId,
    pub key: LogicalId,
}

impl Grantee for Function {
    fn grant_role(&self) -> &ConstructRef {
        &self.role
    }
}

/// The properties of `AWS::Lambda::Function`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionProperties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    function_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    runtime: &'static str,
    handler: &'static str,
    architectures: [Architecture; 1],
    memory_size: u32,
    timeout: u32,
    role: Expr,
    code: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reserved_concurrent_executions: Option<u32>,
    logging_config: serde_json::Value,
}

impl ResourceProperties for FunctionProperties<'_> {
    const TYPE: &'static str = "AWS::Lambda::Function";
}

impl Function {
    /// Its CloudFormation type.
    pub const TYPE: &'static str = <FunctionProperties<'static> as ResourceProperties>::TYPE;

    pub const MEMORY_MB: std::ops::RangeInclusive<u32> = 128..=10_240;
    pub const TIMEOUT_SECS: std::ops::RangeInclusive<u32> = 1..=900;

    pub fn builder(id: &str, code: Code) -> FunctionBuilder {
        FunctionBuilder {
            id: id.to_owned(),
            code,
            name: None,
            description: None,
            architecture: Architecture::Arm64,
            memory_mb: 128,
            timeout_secs: 3,
            reserved_concurrency: None,
            environment: BTreeMap::new(),
            log_retention: Retention::TwoWeeks,
        }
    }

    /// The function name (`Ref`).
    pub fn function_name(&self) -> Expr {
        self.construct.id.reference()
    }

    pub fn construct(&self) -> &ConstructRef {
        &self.construct
    }

    /// The execution role grants extend.
    pub fn role(&self) -> &ConstructRef {
        &self.role
    }

    pub fn log_group(&self) -> &LogGroup {
        &self.log_group
    }

    /// The physical name, when one was given.
    pub fn physical_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn code(&self) -> &Code {
        &self.code
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// For code from a cargo-lambda asset: the parameters naming its bucket and key.
    pub fn asset_parameters(&self) -> Option<&AssetParameters> {
        self.asset_parameters.as_ref()
    }

    pub fn memory_mb(&self) -> u32 {
        self.memory_mb
    }

    pub fn timeout_secs(&self) -> u32 {
        self.timeout_secs
    }

    /// At most this many concurrent executions (`None`: the account's unreserved pool).
    pub fn reserved_concurrency(&self) -> Option<u32> {
        self.reserved_concurrency
    }

    /// The environment the template gives the function (values may be intrinsics).
    pub fn environment(&self) -> &BTreeMap<String, Expr> {
        &self.environment
    }

    pub fn arn(&self) -> Expr {
        self.construct.id.get_att("Arn")
    }

    fn metric(&self, name: &'static str, statistic: Statistic) -> Metric {
        Metric::new("AWS/Lambda", name, ("FunctionName", self.function_name()), statistic)
    }

    pub fn metric_errors(&self) -> Metric {
        self.metric("Errors", Statistic::Sum)
    }

    pub fn metric_invocations(&self) -> Metric {
        self.metric("Invocations", Statistic::Sum)
    }

    pub fn metric_concurrent_executions(&self) -> Metric {
        self.metric("ConcurrentExecutions", Statistic::Maximum)
    }

    pub fn metric_throttles(&self) -> Metric {
        self.metric("Throttles", Statistic::Sum)
    }
}

/// A function's kind in the names of errors and warnings.
const KIND: Kind = Kind::Resource(<FunctionProperties<'static> as ResourceProperties>::TYPE);

impl FunctionBuilder {
    /// How errors will name the built function (`lambda::Function \`<id>\``), for checks made
    /// before it is built.
    pub fn construct_name(&self) -> String {
        format!("{KIND} `{}`", self.id)
    }

    /// The reserved concurrency it will have.
    pub fn planned_reserved_concurrency(&self) -> Option<u32> {
        self.reserved_concurrency
    }

    /// Physical name: 1 to 64 of A-Z, a-z, 0-9, - and _. Its log group is `/aws/lambda/<name>`.
    pub fn function_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    pub fn architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self
    }

    /// 128 to 10240 MB.
    pub fn memory_mb(mut self, mb: u32) -> Self {
        self.memory_mb = mb;
        self
    }

    /// 1 to 900 s.
    pub fn timeout_secs(mut self, secs: u32) -> Self {
        self.timeout_secs = secs;
        self
    }

    /// Concurrency set aside for, and the most ever used by, this function.
    pub fn reserved_concurrency(mut self, executions: u32) -> Self {
        self.reserved_concurrency = Some(executions);
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<Expr>) -> Self {
        self.environment.insert(name.to_owned(), value.into());
        self
    }

    pub fn log_retention(mut self, retention: Retention) -> Self {
        self.log_retention = retention;
        self
    }

    fn check(&self, construct: &ConstructRef) -> Result<()> {
        if let Some(name) = &self.name {
            validate::name(
                construct,
                "FunctionName",
                name,
                1..=64,
                validate::alnum_or("-_"),
                "A-Z, a-z, 0-9, - and _",
            )?;
        }
        if let Some(d) = &self.description {
            validate::max_chars(construct, "Description", d, 256)?;
        }
        validate::in_range(construct, "MemorySize", self.memory_mb, Function::MEMORY_MB)?;
        validate::in_range(construct, "Timeout", self.timeout_secs, Function::TIMEOUT_SECS)?;
        for name in self.environment.keys() {
            let well_formed = name.len() >= 2
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !well_formed {
                return Err(Error::invalid(
                    construct,
                    "Environment.Variables",
                    name,
                    "a name is a letter followed by at least one letter, digit or _",
                ));
            }
            if RESERVED_ENV.contains(&name.as_str()) {
                return Err(Error::invalid(construct, "Environment.Variables", name, "is reserved by Lambda"));
            }
        }
        // Lambda caps the variables at 4 KB; only literal values can be measured here.
        let size: usize = self.environment.iter().map(|(k, v)| k.len() + v.as_literal().map_or(0, str::len)).sum();
        if size > 4096 {
            return Err(Error::invalid(
                construct,
                "Environment.Variables",
                format!("{size} bytes"),
                "must total at most 4 KB",
            ));
        }
        Ok(())
    }

    /// The code location, adding the asset's parameters to the stack on first use.
    fn code(
        &self,
        stack: &mut Stack,
        construct: &ConstructRef,
    ) -> Result<(serde_json::Value, Option<(serde_json::Value, AssetParameters)>)> {
        match &self.code {
            Code::S3 { bucket, key } => Ok((json!({ "S3Bucket": bucket, "S3Key": key }), None)),
            Code::Asset { name } => {
                validate::name(
                    construct,
                    "Code.Asset",
                    name,
                    1..=64,
                    validate::alnum_or("-_"),
                    "A-Z, a-z, 0-9, - and _",
                )?;
                let bucket = match stack.parameter(ASSET_BUCKET_PARAMETER) {
                    Some(id) => id,
                    None => {
                        let mut p = Parameter::string("S3 bucket holding the Lambda zips (see README: Deploy)");
                        p.allowed_pattern = Some("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$".to_owned());
                        p.constraint_description = Some("an S3 bucket name".to_owned());
                        stack.add_parameter(ASSET_BUCKET_PARAMETER, p)?
                    }
                };
                let path = Code::asset_path(name);
                let mut p = Parameter::string(&format!("S3 key of {path}, uploaded under its SHA-256"));
                p.min_length = Some(1);
                p.max_length = Some(1024);
                let key = stack.add_parameter(&format!("{}CodeKey", construct.id), p)?;
                let metadata = json!({ "Asset": {
                    "Name": name,
                    "Path": path,
                    "Architecture": self.architecture,
                    "BucketParameter": bucket,
                    "KeyParameter": key,
                } });
                let code = json!({ "S3Bucket": bucket.reference(), "S3Key": key.reference() });
                Ok((code, Some((metadata, AssetParameters { bucket, key }))))
            }
        }
    }

    #[track_caller]
    pub fn build(self, stack: &mut Stack) -> Result<Function> {
        let location = Location::caller();
        let construct = stack.claim(&self.id, KIND, location)?;
        self.check(&construct)?;
        let role = stack.claim(&format!("{}Role", self.id), Kind::of::<super::iam::RoleProperties>(), location)?;
        let log_group = {
            let mut b = LogGroup::builder(&format!("{}LogGroup", self.id)).retention(self.log_retention);
            if let Some(name) = &self.name {
                b = b.name(format!("/aws/lambda/{name}"));
            }
            b.build_at(stack, location)?
        };
        stack.add_role(Role::new(role.clone(), "lambda.amazonaws.com"));
        stack.grant(&role, Some(log_group.construct()), log_group.arn(), actions::LOGS_WRITE)?;

        let (code, asset) = self.code(stack, &construct)?;
        let (metadata, asset_parameters) = asset.map_or((None, None), |(m, p)| (Some(m), Some(p)));
        let props = FunctionProperties {
            function_name: self.name.as_deref(),
            description: self.description.as_deref(),
            runtime: RUNTIME,
            handler: "bootstrap",
            architectures: [self.architecture],
            memory_size: self.memory_mb,
            timeout: self.timeout_secs,
            role: role.id.get_att("Arn"),
            code,
            environment: (!self.environment.is_empty()).then(|| json!({ "Variables": self.environment })),
            reserved_concurrent_executions: self.reserved_concurrency,
            logging_config: json!({ "LogFormat": "JSON", "LogGroup": log_group.reference() }),
        };
        let mut resource = Resource::of(&props)?;
        if let Some(metadata) = metadata {
            resource = resource.with_metadata(metadata);
        }
        stack.add_resource(&construct, resource);
        Ok(Function {
            construct,
            role,
            log_group,
            name: self.name,
            code: self.code,
            architecture: self.architecture,
            memory_mb: self.memory_mb,
            timeout_secs: self.timeout_secs,
            reserved_concurrency: self.reserved_concurrency,
            environment: self.environment,
            asset_parameters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{LogicalId, Template};

    fn get(t: &Template, id: &str) -> Resource {
        t.resources[&LogicalId::new(id).unwrap()].clone()
    }

    fn function(f: impl FnOnce(FunctionBuilder) -> FunctionBuilder) -> Result<Stack> {
        let mut stack = Stack::new("s", "").unwrap();
        f(Function::builder("Fn", Code::asset("publish-metrics"))).build(&mut stack)?;
        Ok(stack)
    }

    #[test]
    fn function_has_role_log_group_and_asset_parameters() {
        let stack =
            function(|b| b.function_name("PublishMetrics").env("TABLE_NAME", "t").reserved_concurrency(1)).unwrap();
        let t = stack.to_template().unwrap();
        let f = get(&t, "Fn");
        assert_eq!(f.properties["Runtime"], "provided.al2023");
        assert_eq!(f.properties["Handler"], "bootstrap");
        assert_eq!(f.properties["Architectures"], json!(["arm64"]));
        assert_eq!(f.properties["Role"], json!({"Fn::GetAtt": ["FnRole", "Arn"]}));
        assert_eq!(f.properties["Code"], json!({"S3Bucket": {"Ref": "AssetBucket"}, "S3Key": {"Ref": "FnCodeKey"}}));
        assert_eq!(f.properties["ReservedConcurrentExecutions"], 1);
        assert_eq!(f.properties["Environment"], json!({"Variables": {"TABLE_NAME": "t"}}));
        assert_eq!(f.properties["LoggingConfig"], json!({"LogFormat": "JSON", "LogGroup": {"Ref": "FnLogGroup"}}));
        assert_eq!(f.metadata.unwrap()["Asset"]["Path"], "target/lambda/publish-metrics/bootstrap.zip");
        assert_eq!(get(&t, "FnLogGroup").properties["LogGroupName"], "/aws/lambda/PublishMetrics");
        let role = get(&t, "FnRole");
        assert_eq!(
            role.properties["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"],
            "lambda.amazonaws.com"
        );
        let statements = &role.properties["Policies"][0]["PolicyDocument"]["Statement"];
        assert_eq!(statements[0]["Action"], json!(["logs:CreateLogStream", "logs:PutLogEvents"]));
        assert_eq!(statements[0]["Resource"], json!([{"Fn::GetAtt": ["FnLogGroup", "Arn"]}]));
        assert!(t.parameters.contains_key(&LogicalId::new("AssetBucket").unwrap()));
    }

    #[test]
    fn two_functions_share_the_bucket_parameter() {
        let mut stack = Stack::new("s", "").unwrap();
        Function::builder("A", Code::asset("a")).build(&mut stack).unwrap();
        Function::builder("B", Code::asset("b")).architecture(Architecture::X86_64).build(&mut stack).unwrap();
        let t = stack.to_template().unwrap();
        let names: Vec<_> = t.parameters.keys().map(LogicalId::as_str).collect();
        assert_eq!(names, ["ACodeKey", "AssetBucket", "BCodeKey"]);
        assert_eq!(get(&t, "B").properties["Architectures"], json!(["x86_64"]));
    }

    #[test]
    fn s3_code_needs_no_parameters() {
        let mut stack = Stack::new("s", "").unwrap();
        Function::builder("A", Code::S3 { bucket: "b".into(), key: "k".into() }).build(&mut stack).unwrap();
        let t = stack.to_template().unwrap();
        assert!(t.parameters.is_empty());
        assert_eq!(get(&t, "A").properties["Code"], json!({"S3Bucket": "b", "S3Key": "k"}));
    }

    #[test]
    fn memory_and_timeout_limits() {
        for (mb, ok) in [(127, false), (128, true), (10_240, true), (10_241, false)] {
            let r = function(|b| b.memory_mb(mb));
            assert_eq!(r.is_ok(), ok, "{mb}");
            if !ok {
                assert!(r
                    .unwrap_err()
                    .to_string()
                    .starts_with(&format!("lambda::Function `Fn`: MemorySize = {mb} is invalid")));
            }
        }
        for (s, ok) in [(0, false), (1, true), (900, true), (901, false)] {
            let r = function(|b| b.timeout_secs(s));
            assert_eq!(r.is_ok(), ok, "{s}");
        }
    }

    #[test]
    fn reserved_concurrency_zero_is_allowed() {
        // Negative values cannot be written: the type is u32.
        let t = function(|b| b.reserved_concurrency(0)).unwrap().to_template().unwrap();
        assert_eq!(get(&t, "Fn").properties["ReservedConcurrentExecutions"], 0);
    }

    #[test]
    fn names_environment_and_description() {
        assert!(function(|b| b.function_name("a".repeat(64))).is_ok());
        assert!(function(|b| b.function_name("a".repeat(65))).is_err());
        assert!(function(|b| b.function_name("")).is_err());
        assert!(function(|b| b.function_name("a.b")).is_err());
        assert!(function(|b| b.env("A1", "x")).is_ok());
        for bad in ["A", "1A", "A-B", "_HANDLER"] {
            let err = function(|b| b.env(bad, "x")).unwrap_err().to_string();
            assert!(err.contains(&format!("Environment.Variables = {bad} is invalid")), "{err}");
        }
        let err = function(|b| b.env("AWS_REGION", "x")).unwrap_err().to_string();
        assert!(err.contains("reserved by Lambda"), "{err}");
        assert!(function(|b| b.env("BIG", "x".repeat(4093))).is_ok());
        assert!(function(|b| b.env("BIG", "x".repeat(4094))).is_err());
        assert!(function(|b| b.description("d".repeat(256))).is_ok());
        assert!(function(|b| b.description("d".repeat(257))).is_err());
        let mut stack = Stack::new("s", "").unwrap();
        assert!(Function::builder("F", Code::asset("bad name")).build(&mut stack).is_err());
    }
}
