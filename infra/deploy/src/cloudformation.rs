//! The CloudFormation and S3 calls of deploy, diff, destroy, outputs and bootstrap.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, TemplateStage,
};
use aws_sdk_cloudformation::Client as Cfn;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;

use crate::guard::{self, ResourceChange, Review};

/// CloudFormation's limit on an inline template body; larger ones go through S3.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

/// An SDK error as a user reads it: the service's code and message; the HTTP status and body
/// when the answer could not be parsed (some local endpoints); the chain of causes otherwise
/// (timeouts, connection failures).
pub fn sdk<E: std::error::Error + ProvideErrorMetadata + 'static>(e: &SdkError<E, HttpResponse>) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match e {
            SdkError::ServiceError(service) => {
                let raw = service.raw();
                let body = raw.body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                format!("HTTP {}: {}", raw.status().as_u16(), body.trim())
            }
            other => format!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(other)),
        },
    }
}

/// The partition of `region`: `aws-cn`, `aws-us-gov` or `aws`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// The region the S3 client resolved (flag, environment, profile), `us-east-1` without one.
fn resolved_region(s3: &S3) -> String {
    s3.config().region().map_or_else(|| "us-east-1".to_owned(), |r| r.as_ref().to_owned())
}

/// The virtual-host-free URL of an S3 object in `region`, in that region's partition.
pub fn object_url(region: &str, bucket: &str, key: &str) -> String {
    let suffix = if partition(region) == "aws-cn" { "amazonaws.com.cn" } else { "amazonaws.com" };
    let host = if region == "us-east-1" { format!("s3.{suffix}") } else { format!("s3.{region}.{suffix}") };
    format!("https://{host}/{bucket}/{key}")
}

/// The bucket policy `bootstrap` sets: every request without TLS is denied.
pub fn tls_only_policy(region: &str, bucket: &str) -> serde_json::Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyWithoutTls",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [arn.clone(), format!("{arn}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
}

/// Creates the asset bucket in the client's resolved region: encrypted (SSE-S3), versioned,
/// TLS only (unless `plain_http`: a local endpoint, where that policy would refuse every
/// request), and with every public access blocked.
pub async fn bootstrap(s3: &S3, bucket: &str, plain_http: bool) -> Result<()> {
    let region = resolved_region(s3);
    let region = Some(region.as_str());
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let mut create = s3.create_bucket().bucket(bucket);
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(r)).build(),
        );
    }
    match create.send().await {
        Ok(_) => println!("created bucket {bucket}"),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => {
            println!("bucket {bucket} exists and is yours; securing it")
        }
        Err(e) => bail!("cannot create bucket {bucket}: {}", sdk(&e)),
    }
    let default = ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build()?;
    let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(ServerSideEncryptionConfiguration::builder().rules(rule).build()?)
        .send()
        .await
        .map_err(|e| anyhow!("cannot set encryption on {bucket}: {}", sdk(&e)))?;
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("cannot block public access to {bucket}: {}", sdk(&e)))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow!("cannot turn on versioning for {bucket}: {}", sdk(&e)))?;
    // On a plain-HTTP endpoint (a local one) a TLS-only policy would refuse every request.
    if plain_http {
        println!("bucket {bucket}: SSE-S3 encryption on, versioned, public access blocked (plain-HTTP endpoint: no TLS-only policy)");
        return Ok(());
    }
    let region = resolved_region(s3);
    s3.put_bucket_policy()
        .bucket(bucket)
        .policy(tls_only_policy(&region, bucket).to_string())
        .send()
        .await
        .map_err(|e| anyhow!("cannot set the TLS-only policy on {bucket}: {}", sdk(&e)))?;
    println!("bucket {bucket}: SSE-S3 encryption on, versioned, TLS only, public access blocked");
    Ok(())
}

/// Uploads `body` to `bucket`/`key` (keys are content hashes) unless an object with the same
/// SHA-256 checksum is there already; an object at the key with another checksum is an error
/// (something else wrote it). A HEAD refused with 403 (a role without `s3:ListBucket` gets 403
/// for a missing key) is treated as "not known there": the upload decides. Returns whether it
/// uploaded.
pub async fn upload_once(s3: &S3, bucket: &str, key: &str, body: Vec<u8>) -> Result<bool> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let checksum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
    let head =
        s3.head_object().bucket(bucket).key(key).checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled).send().await;
    let other = |found: &str, expected: &str| {
        anyhow!(
            "s3://{bucket}/{key} holds other bytes ({found}, expected {expected}): something else wrote that key; remove it or use another bucket"
        )
    };
    match head {
        Ok(existing) => match existing.checksum_sha256() {
            Some(c) if c == checksum => return Ok(false),
            Some(c) => return Err(other(&format!("SHA-256 {c}"), &checksum)),
            None => {
                // Stored without a checksum. Unless KMS encrypted it or it was uploaded in parts,
                // its ETag is the MD5 of its bytes: compare that.
                let kms = existing.server_side_encryption().is_some_and(|e| e.as_str().starts_with("aws:kms"));
                match existing.e_tag() {
                    Some(tag) if !kms && !tag.contains('-') => {
                        use md5::Digest as _;
                        let md5 = format!("\"{}\"", hex::encode(md5::Md5::digest(&body)));
                        if *tag == md5 {
                            return Ok(false);
                        }
                        return Err(other(&format!("ETag {tag}"), &md5));
                    }
                    // Nothing to compare: upload again, with a checksum (versioning keeps the old).
                    _ => {}
                }
            }
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {}
        Err(e) => bail!(
            "cannot reach s3://{bucket}/{key}: {}\n(create the bucket with `cargo run --bin deploy -- bootstrap --asset-bucket {bucket}`)",
            sdk(&e)
        ),
    }
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .checksum_sha256(checksum)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| anyhow!("cannot upload s3://{bucket}/{key}: {}", sdk(&e)))?;
    Ok(true)
}

/// The stack as DescribeStacks reports it, or `None` when there is no such stack.
pub async fn describe(cfn: &Cfn, stack: &str) -> Result<Option<aws_sdk_cloudformation::types::Stack>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if sdk(&e).contains("does not exist") => Ok(None),
        Err(e) => bail!("cannot describe stack {stack}: {}", sdk(&e)),
    }
}

/// The stack's status, or `None` when there is no such stack.
pub async fn stack_status(cfn: &Cfn, stack: &str) -> Result<Option<StackStatus>> {
    Ok(describe(cfn, stack).await?.and_then(|s| s.stack_status().cloned()))
}

/// The template, inline or (over 51,200 bytes) through the asset bucket.
pub enum TemplateSource {
    Body(String),
    Url(String),
}

pub async fn template_source(s3: &S3, bucket: Option<&str>, body: String) -> Result<TemplateSource> {
    if body.len() <= MAX_TEMPLATE_BODY {
        return Ok(TemplateSource::Body(body));
    }
    let Some(bucket) = bucket else {
        bail!(
            "the template is {} bytes, over CloudFormation's {MAX_TEMPLATE_BODY}: pass --asset-bucket to upload it",
            body.len()
        );
    };
    let key = format!("templates/{}.json", crate::assets::sha256_hex(body.as_bytes()));
    upload_once(s3, bucket, &key, body.into_bytes()).await?;
    Ok(TemplateSource::Url(object_url(&resolved_region(s3), bucket, &key)))
}

/// Waits for the change set `id` of `stack` and reviews it (with the properties' before and
/// after values, so the guard sees what an in-place change does). `None` when CloudFormation
/// found nothing to change (the change set is deleted again); an executable change set with no
/// resource changes (only outputs changed, say) is a change.
pub async fn review_change_set(cfn: &Cfn, stack: &str, id: &str) -> Result<Option<Review>> {
    let describe = |token: Option<String>| {
        cfn.describe_change_set()
            .change_set_name(id)
            .stack_name(stack)
            .include_property_values(true)
            .set_next_token(token)
    };
    let mut changes = Vec::new();
    let mut waited = 0;
    loop {
        let out = describe(None).send().await.map_err(|e| anyhow!("cannot describe change set {id}: {}", sdk(&e)))?;
        match out.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                changes.extend(out.changes().iter().filter_map(|c| c.resource_change()).map(convert));
                let mut token = out.next_token().map(str::to_owned);
                while let Some(t) = token {
                    let page = describe(Some(t)).send().await?;
                    changes.extend(page.changes().iter().filter_map(|c| c.resource_change()).map(convert));
                    token = page.next_token().map(str::to_owned);
                }
                return Ok(Some(guard::review(changes)));
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = out.status_reason().unwrap_or_default();
                delete_change_set(cfn, stack, id).await;
                if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") {
                    return Ok(None);
                }
                bail!("change set for {stack} failed: {reason}");
            }
            _ => {
                waited += 1;
                if waited > 300 {
                    bail!("change set {id} was not ready after 10 minutes");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// A change set that exists, and what it would do.
pub struct PlannedChange {
    pub id: String,
    pub review: Review,
}

/// Creates a change set (CREATE or UPDATE), waits for it, and reviews it. `None` when there is
/// nothing to change (the change set is deleted again).
pub async fn plan(
    cfn: &Cfn,
    stack: &str,
    template: TemplateSource,
    parameters: &BTreeMap<String, String>,
    exists: bool,
) -> Result<Option<PlannedChange>> {
    let name = format!("deploy-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let mut create = cfn
        .create_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .change_set_type(if exists { ChangeSetType::Update } else { ChangeSetType::Create })
        .capabilities(Capability::CapabilityIam)
        .tags(
            aws_sdk_cloudformation::types::Tag::builder()
                .key(crate::commands::APP_TAG.0)
                .value(crate::commands::APP_TAG.1)
                .build(),
        );
    create = match template {
        TemplateSource::Body(b) => create.template_body(b),
        TemplateSource::Url(u) => create.template_url(u),
    };
    for (k, v) in parameters {
        create = create.parameters(Parameter::builder().parameter_key(k).parameter_value(v).build());
    }
    let id = create
        .send()
        .await
        .map_err(|e| anyhow!("cannot create a change set for {stack}: {}", sdk(&e)))?
        .id()
        .unwrap_or(&name)
        .to_owned();

    match review_change_set(cfn, stack, &id).await? {
        Some(review) => Ok(Some(PlannedChange { id, review })),
        None => Ok(None),
    }
}

fn convert(c: &aws_sdk_cloudformation::types::ResourceChange) -> ResourceChange {
    let details = c
        .details()
        .iter()
        .filter_map(|d| d.target())
        .map(|t| guard::Detail {
            target: guard::Target {
                attribute: t.attribute().map(|a| a.as_str().to_owned()),
                name: t.name().map(str::to_owned),
                path: t.path().map(str::to_owned),
                before_value: t.before_value().map(str::to_owned),
                after_value: t.after_value().map(str::to_owned),
                attribute_change_type: t.attribute_change_type().map(|a| a.as_str().to_owned()),
            },
        })
        .collect();
    ResourceChange {
        action: c.action().map(|a| a.as_str().to_owned()).unwrap_or_default(),
        logical_resource_id: c.logical_resource_id().unwrap_or_default().to_owned(),
        physical_resource_id: c.physical_resource_id().map(str::to_owned),
        resource_type: c.resource_type().unwrap_or_default().to_owned(),
        replacement: c.replacement().map(|r| r.as_str().to_owned()),
        policy_action: c.policy_action().map(|p| p.as_str().to_owned()),
        details,
    }
}

/// Deletes a change set; a failure is only reported, it does not hide the real outcome.
pub async fn delete_change_set(cfn: &Cfn, stack: &str, id: &str) {
    if let Err(e) = cfn.delete_change_set().change_set_name(id).stack_name(stack).send().await {
        eprintln!("warning: could not delete change set {id}: {}", sdk(&e));
    }
}

/// Whether a stack status is final, and whether it is a success.
fn settled(status: &StackStatus) -> Option<bool> {
    use StackStatus as S;
    match status {
        S::CreateComplete | S::UpdateComplete | S::DeleteComplete | S::ImportComplete => Some(true),
        S::CreateFailed
        | S::RollbackComplete
        | S::RollbackFailed
        | S::DeleteFailed
        | S::UpdateRollbackComplete
        | S::UpdateRollbackFailed
        | S::UpdateFailed
        | S::ImportRollbackComplete
        | S::ImportRollbackFailed => Some(false),
        _ => None,
    }
}

/// IDs of the events the stack has now, so that [`follow`] prints only newer ones (by ID, not
/// by time: the local clock may differ from AWS's).
pub async fn event_ids(cfn: &Cfn, stack: &str) -> HashSet<String> {
    match cfn.describe_stack_events().stack_name(stack).send().await {
        Ok(out) => out.stack_events().iter().filter_map(|e| e.event_id().map(str::to_owned)).collect(),
        Err(_) => HashSet::new(),
    }
}

/// Prints stack events as plain lines (time, logical ID, type, status, reason) until the stack
/// settles; returns whether it succeeded. On failure, prints the first failed resource's
/// reason. When `deleting`, a stack that is gone counts as success.
pub async fn follow(cfn: &Cfn, stack: &str, mut seen: HashSet<String>, deleting: bool) -> Result<bool> {
    let mut first_failure: Option<String> = None;
    loop {
        let events = match cfn.describe_stack_events().stack_name(stack).send().await {
            Ok(out) => out.stack_events().to_vec(),
            Err(e) if deleting && sdk(&e).contains("does not exist") => return Ok(true),
            Err(e) => bail!("cannot read the events of {stack}: {}", sdk(&e)),
        };
        // Newest first: print the new ones oldest first.
        for e in events.iter().rev() {
            if !seen.insert(e.event_id().unwrap_or_default().to_owned()) {
                continue;
            }
            let status = e.resource_status().map(|s| s.as_str()).unwrap_or_default();
            let reason = e.resource_status_reason().unwrap_or_default();
            let mut line = format!(
                "{}  {:<32} {:<34} {}",
                e.timestamp().map(|t| t.to_string()).unwrap_or_default(),
                e.logical_resource_id().unwrap_or_default(),
                e.resource_type().unwrap_or_default(),
                status
            );
            if !reason.is_empty() {
                let _ = write!(line, "  {reason}");
            }
            println!("{line}");
            if status.ends_with("_FAILED") && first_failure.is_none() && !reason.is_empty() {
                first_failure = Some(format!("{}: {reason}", e.logical_resource_id().unwrap_or_default()));
            }
        }
        match stack_status(cfn, stack).await? {
            None if deleting => return Ok(true),
            None => bail!("stack {stack} disappeared"),
            Some(status) => {
                if let Some(ok) = settled(&status) {
                    let ok = ok && !(deleting && status != StackStatus::DeleteComplete);
                    if !ok {
                        eprintln!("stack {stack} ended in {}", status.as_str());
                        if let Some(f) = first_failure {
                            eprintln!("first failure: {f}");
                        }
                        if status == StackStatus::RollbackComplete {
                            eprintln!(
                                "the stack could not be created and must be deleted before the next deploy: `cargo run --bin deploy -- destroy --stack-name {stack}` (or `aws cloudformation delete-stack --stack-name {stack}`)"
                            );
                        }
                    }
                    return Ok(ok);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Sets the stack's policy (what CloudFormation lets an update do to each resource).
pub async fn set_stack_policy(cfn: &Cfn, stack: &str, policy: &serde_json::Value) -> Result<()> {
    cfn.set_stack_policy()
        .stack_name(stack)
        .stack_policy_body(policy.to_string())
        .send()
        .await
        .map_err(|e| anyhow!("cannot set the stack policy of {stack}: {}", sdk(&e)))?;
    Ok(())
}

/// The stack's outputs.
pub async fn outputs(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| anyhow!("there is no stack {stack}"))?;
    Ok(s.outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value().unwrap_or_default().to_owned())))
        .collect())
}

/// Physical IDs of the stack's resources, by logical ID.
pub async fn physical_ids(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let out = cfn
        .describe_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| anyhow!("cannot list the resources of {stack}: {}", sdk(&e)))?;
    Ok(out
        .stack_resources()
        .iter()
        .filter_map(|r| {
            Some((r.logical_resource_id()?.to_owned(), r.physical_resource_id().unwrap_or_default().to_owned()))
        })
        .collect())
}

/// The parameters the stack was last deployed with.
pub async fn deployed_parameters(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| anyhow!("there is no stack {stack}"))?;
    Ok(s.parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_owned(), p.parameter_value().unwrap_or_default().to_owned())))
        .collect())
}

/// Whether the deployed stack already runs `template` with `parameters` (as the CDK CLI
/// checks before deploying): then there is nothing to change.
pub async fn is_current(
    cfn: &Cfn,
    stack: &str,
    template: &serde_json::Value,
    parameters: &BTreeMap<String, String>,
) -> Result<bool> {
    Ok(deployed_template(cfn, stack).await? == *template && deployed_parameters(cfn, stack).await? == *parameters)
}

/// The deployed template (as submitted), parsed.
pub async fn deployed_template(cfn: &Cfn, stack: &str) -> Result<serde_json::Value> {
    let out = cfn
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| anyhow!("cannot get the template of {stack}: {}", sdk(&e)))?;
    let body = out.template_body().unwrap_or_default();
    serde_json::from_str(body)
        .or_else(|_| serde_yaml::from_str(body))
        .context("the deployed template is neither JSON nor long-form YAML")
}

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
    use super::*;

    #[test]
    fn region_and_partition_shape_urls_and_arns() {
        assert_eq!(partition("eu-west-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(object_url("us-east-1", "b", "k"), "https://s3.amazonaws.com/b/k");
        assert_eq!(object_url("eu-west-1", "b", "k"), "https://s3.eu-west-1.amazonaws.com/b/k");
        assert_eq!(object_url("cn-north-1", "b", "k"), "https://s3.cn-north-1.amazonaws.com.cn/b/k");
        assert_eq!(object_url("us-gov-west-1", "b", "k"), "https://s3.us-gov-west-1.amazonaws.com/b/k");
        let p = tls_only_policy("cn-north-1", "b");
        assert_eq!(p["Statement"][0]["Resource"], serde_json::json!(["arn:aws-cn:s3:::b", "arn:aws-cn:s3:::b/*"]));
    }
    use serde_json::json;

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

    #[test]
    fn settled_statuses() {
        assert_eq!(settled(&StackStatus::CreateComplete), Some(true));
        assert_eq!(settled(&StackStatus::RollbackComplete), Some(false));
        assert_eq!(settled(&StackStatus::UpdateRollbackComplete), Some(false));
        assert_eq!(settled(&StackStatus::CreateInProgress), None);
        assert_eq!(settled(&StackStatus::UpdateCompleteCleanupInProgress), None);
    }
}
