//! The CloudFormation and S3 calls of deploy, diff, destroy, outputs and bootstrap. They return
//! data and typed errors and print nothing: progress goes to the caller's [`Progress`] callback.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use aws_sdk_cloudformation::types::{
    Capability, ChangeSetStatus, ChangeSetType, Parameter, StackStatus, TemplateStage,
};
use aws_sdk_cloudformation::Client as Cfn;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;
use serde::Serialize;

pub use crate::error::sdk;
use crate::error::{is_missing_stack, DeployError};
use crate::guard::{self, ResourceChange, Review};
use crate::status::StackState;

type Result<T, E = DeployError> = std::result::Result<T, E>;

/// CloudFormation's limit on an inline template body; larger ones go through S3.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

/// What a long operation reports while it works; a binary prints each (they implement
/// `Display`), a test may collect them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "progress", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Progress {
    /// A Lambda zip is in the asset bucket (`uploaded`: now; else it was there already).
    Asset {
        name: String,
        bytes: u64,
        url: String,
        uploaded: bool,
    },
    /// The stack exists only as an unexecuted change set; a new one is created.
    ReviewInProgress {
        stack: String,
    },
    CreatingChangeSet {
        stack: String,
        update: bool,
    },
    /// The change set is reviewed: what it changes and what the guard refuses.
    Reviewed(PlannedChange),
    /// One stack event, in the order CloudFormation recorded them.
    StackEvent(StackEvent),
    /// A change set could not be deleted (the outcome stands; the change set is left over).
    ChangeSetLeftOver {
        id: String,
        message: String,
    },
    BucketCreated {
        bucket: String,
    },
    BucketExists {
        bucket: String,
    },
    /// Termination protection was turned on: deleting the stack now takes `destroy --unprotect`.
    Protected {
        stack: String,
    },
    /// Something that does not change the outcome but should be seen.
    /// The stack policy was set: protecting every stateful resource, or lifted for `lifted`.
    PolicySet {
        stack: String,
        lifted: Vec<String>,
    },
    Warning {
        message: String,
    },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Asset { name, bytes, url, uploaded } => write!(
                f,
                "asset {name:<18} {bytes:>9} bytes  {url}  {}",
                if *uploaded { "uploaded" } else { "already there" }
            ),
            Progress::ReviewInProgress { stack } => write!(
                f,
                "stack {stack} exists only as an unexecuted change set (REVIEW_IN_PROGRESS); a new one is created (drop the old with `aws cloudformation delete-stack --stack-name {stack}`)"
            ),
            Progress::CreatingChangeSet { stack, update } => {
                write!(f, "creating a change set for {stack} ({}) ...", if *update { "update" } else { "create" })
            }
            Progress::Reviewed(planned) => write!(f, "\n{}", planned.review),
            Progress::StackEvent(e) => e.fmt(f),
            Progress::ChangeSetLeftOver { id, message } => {
                write!(f, "warning: could not delete change set {id}: {message}")
            }
            Progress::BucketCreated { bucket } => write!(f, "created bucket {bucket}"),
            Progress::BucketExists { bucket } => write!(f, "bucket {bucket} exists and is yours"),
            Progress::Protected { stack } => write!(f, "termination protection turned on for {stack}"),
            Progress::Warning { message } => write!(f, "warning: {message}"),
            Progress::PolicySet { stack, lifted } if lifted.is_empty() => {
                write!(f, "stack policy of {stack} set: replacing or deleting its stateful resources is denied")
            }
            Progress::PolicySet { stack, lifted } => write!(
                f,
                "stack policy of {stack} lifted for {} for this update only (--allow-replace)",
                lifted.join(", ")
            ),
        }
    }
}

/// Where progress goes.
pub type Report<'a> = &'a mut (dyn FnMut(Progress) + Send);

/// One stack event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackEvent {
    pub time: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
}

impl StackEvent {
    fn failed(&self) -> bool {
        self.status.ends_with("_FAILED")
    }
}

impl fmt::Display for StackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {:<32} {:<34} {}", self.time, self.logical_id, self.resource_type, self.status)?;
        match &self.reason {
            Some(reason) => write!(f, "  {reason}"),
            None => Ok(()),
        }
    }
}

/// How a stack operation ended when it did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StackFailure {
    pub stack: String,
    pub status: String,
    /// The first failed resource and its reason.
    pub first_failure: Option<String>,
}

impl fmt::Display for StackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stack {} ended in {}", self.stack, self.status)?;
        if let Some(first) = &self.first_failure {
            write!(f, "\nfirst failure: {first}")?;
        }
        if self.status == StackStatus::RollbackComplete.as_str() {
            write!(
                f,
                "\nthe stack could not be created and must be deleted before the next deploy: `cargo run --bin deploy -- destroy --stack-name {}` (or `aws cloudformation delete-stack --stack-name {}`)",
                self.stack, self.stack
            )?;
        }
        Ok(())
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

/// What `bootstrap` left: a bucket, whether it was made now, whether it is TLS only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrapped {
    pub bucket: String,
    pub created: bool,
    /// Whether its settings were set (a new bucket, or `--update`); an existing bucket's are
    /// left as they are.
    pub configured: bool,
    pub tls_only: bool,
}

impl fmt::Display for Bootstrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.configured {
            write!(
                f,
                "bucket {} exists and is yours: its encryption, versioning, policy and public-access block were left as they are (pass --update to set this tool's)",
                self.bucket
            )
        } else if self.tls_only {
            write!(f, "bucket {}: SSE-S3 encryption on, versioned, TLS only, public access blocked", self.bucket)
        } else {
            write!(
                f,
                "bucket {}: SSE-S3 encryption on, versioned, public access blocked (plain-HTTP endpoint: no TLS-only policy)",
                self.bucket
            )
        }
    }
}

/// Creates the asset bucket in the client's resolved region: encrypted (SSE-S3), versioned,
/// TLS only (unless `plain_http`: a local endpoint, where that policy would refuse every
/// request), and with every public access blocked.
pub async fn bootstrap(
    s3: &S3,
    bucket: &str,
    plain_http: bool,
    update: bool,
    progress: Report<'_>,
) -> Result<Bootstrapped> {
    let region = resolved_region(s3);
    use aws_sdk_s3::types::{
        BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let mut create = s3.create_bucket().bucket(bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    // Asked first: in us-east-1, CreateBucket on a bucket you own answers 200 as if it made it.
    let exists = match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => true,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => false,
        Err(e) => return Err(DeployError::aws(format!("find bucket {bucket} (is it another account's?)"), &e)),
    };
    let created = !exists
        && match create.send().await {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_bucket_already_owned_by_you()) => false,
            Err(e) => return Err(DeployError::aws(format!("create bucket {bucket}"), &e)),
        };
    progress(if created {
        Progress::BucketCreated { bucket: bucket.to_owned() }
    } else {
        Progress::BucketExists { bucket: bucket.to_owned() }
    });
    // An existing bucket's settings are its owner's: replaced only when asked.
    if !created && !update {
        return Ok(Bootstrapped { bucket: bucket.to_owned(), created, configured: false, tls_only: false });
    }
    let usage = |e: aws_sdk_s3::error::BuildError| DeployError::Usage(e.to_string());
    let default =
        ServerSideEncryptionByDefault::builder().sse_algorithm(ServerSideEncryption::Aes256).build().map_err(usage)?;
    let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder().rules(rule).build().map_err(usage)?,
        )
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("set encryption on {bucket}"), &e))?;
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
        .map_err(|e| DeployError::aws(format!("block public access to {bucket}"), &e))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("turn on versioning for {bucket}"), &e))?;
    // On a plain-HTTP endpoint (a local one) a TLS-only policy would refuse every request.
    if !plain_http {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(tls_only_policy(&region, bucket).to_string())
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("set the TLS-only policy on {bucket}"), &e))?;
    }
    Ok(Bootstrapped { bucket: bucket.to_owned(), created, configured: true, tls_only: !plain_http })
}

/// Uploads `body` to `bucket`/`key` (keys are content hashes) unless an object with the same
/// SHA-256 checksum is there already; an object at the key with another checksum is an error
/// (something else wrote it). A HEAD refused with 403 (a role without `s3:ListBucket` gets 403
/// for a missing key) is treated as "not known there": the upload decides. Returns whether it
/// uploaded. With `owner` (an account ID), S3 refuses every call unless that account owns the
/// bucket (`ExpectedBucketOwner`), so a bucket of the same name in another account never gets
/// the code.
pub async fn upload_once(s3: &S3, bucket: &str, owner: Option<&str>, key: &str, body: Vec<u8>) -> Result<bool> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let checksum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&body));
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .set_expected_bucket_owner(owner.map(str::to_owned))
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await;
    let other = |found: String, expected: &str| DeployError::ForeignObject {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        found,
        expected: expected.to_owned(),
    };
    match head {
        Ok(existing) => match existing.checksum_sha256() {
            Some(c) if c == checksum => return Ok(false),
            Some(c) => return Err(other(format!("SHA-256 {c}"), &checksum)),
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
                        return Err(other(format!("ETag {tag}"), &md5));
                    }
                    // Nothing to compare: upload again, with a checksum (versioning keeps the old).
                    _ => {}
                }
            }
        },
        Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {}
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {}
        Err(e) => {
            return Err(DeployError::NoBucket { bucket: bucket.to_owned(), key: key.to_owned(), message: sdk(&e) })
        }
    }
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .set_expected_bucket_owner(owner.map(str::to_owned))
        .checksum_sha256(checksum)
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("upload s3://{bucket}/{key}"), &e))?;
    Ok(true)
}

/// The stack as DescribeStacks reports it, or `None` when there is no such stack.
pub async fn describe(cfn: &Cfn, stack: &str) -> Result<Option<aws_sdk_cloudformation::types::Stack>> {
    match cfn.describe_stacks().stack_name(stack).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(e) if is_missing_stack(&e) => Ok(None),
        Err(e) => Err(DeployError::aws(format!("describe stack {stack}"), &e)),
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

pub async fn template_source(
    s3: &S3,
    bucket: Option<&str>,
    owner: Option<&str>,
    body: String,
) -> Result<TemplateSource> {
    if body.len() <= MAX_TEMPLATE_BODY {
        return Ok(TemplateSource::Body(body));
    }
    let Some(bucket) = bucket else {
        return Err(DeployError::TemplateTooLarge(body.len()));
    };
    let key = format!("templates/{}.json", crate::assets::sha256_hex(body.as_bytes()));
    upload_once(s3, bucket, owner, &key, body.into_bytes()).await?;
    Ok(TemplateSource::Url(object_url(&resolved_region(s3), bucket, &key)))
}

/// What DescribeChangeSet's `StatusReason` says when, described with property values, it left
/// out the changes of resources whose values failed validation (the change set itself is still
/// `CREATE_COMPLETE`): "[WARN] --include-property-values option can return incomplete
/// ChangeSet data because: ... Logical Id: X ...".
pub const INCOMPLETE_MARKER: &str = "--include-property-values option can return incomplete ChangeSet data";

/// The logical IDs an incomplete description's reason names (`Logical Id: X`).
pub fn named_logical_ids(reason: &str) -> Vec<String> {
    reason
        .split("Logical Id: ")
        .skip(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_alphanumeric).collect::<String>())
        .filter(|id| !id.is_empty())
        .collect()
}

/// `with` (described with property values) completed by `without` (described without): every
/// change of `without` whose logical ID `with` lacks is added (its values unknown, so the guard
/// reads it without them, failing closed), and every ID `reason` names that neither has becomes a
/// change of unknown type, which the guard refuses.
pub fn merge_incomplete(
    mut with: Vec<ResourceChange>,
    without: Vec<ResourceChange>,
    reason: &str,
) -> Vec<ResourceChange> {
    let known = |changes: &[ResourceChange], id: &str| changes.iter().any(|c| c.logical_resource_id == id);
    for c in without {
        if !known(&with, &c.logical_resource_id) {
            with.push(c);
        }
    }
    for id in named_logical_ids(reason) {
        if !known(&with, &id) {
            with.push(ResourceChange::new(guard::Action::Unknown("(not described)".to_owned()), &id, ""));
        }
    }
    with
}

/// Waits for the change set `id` of `stack` and reviews it (with the properties' before and
/// after values, so the guard sees what an in-place change does). `None` when CloudFormation
/// found nothing to change (the change set is deleted again); an executable change set with no
/// resource changes (only outputs changed, say) is a change. A description AWS says is
/// incomplete is completed by one without property values ([`merge_incomplete`]).
pub async fn review_change_set(cfn: &Cfn, stack: &str, id: &str, progress: Report<'_>) -> Result<Option<Review>> {
    let mut waited = 0;
    loop {
        let out = cfn
            .describe_change_set()
            .change_set_name(id)
            .stack_name(stack)
            .include_property_values(true)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
        match out.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                let mut changes = described(cfn, stack, id, true).await?;
                if let Some(reason) = out.status_reason().filter(|r| r.contains(INCOMPLETE_MARKER)) {
                    progress(Progress::Warning {
                        message: format!(
                            "AWS described change set {id} incompletely with property values ({reason}): described again without them, and merged"
                        ),
                    });
                    changes = merge_incomplete(changes, described(cfn, stack, id, false).await?, reason);
                }
                return Ok(Some(guard::review(changes)));
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = out.status_reason().unwrap_or_default().to_owned();
                delete_change_set(cfn, stack, id, progress).await;
                if reason.contains("didn't contain changes") || reason.contains("No updates are to be performed") {
                    return Ok(None);
                }
                return Err(DeployError::ChangeSetFailed { stack: stack.to_owned(), reason });
            }
            _ => {
                waited += 1;
                if waited > 300 {
                    return Err(DeployError::ChangeSetTimeout(id.to_owned()));
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// The stack a change set belongs to and its `ExecutionStatus`, as AWS describes it now.
pub async fn change_set_state(cfn: &Cfn, stack: &str, id: &str) -> Result<(Option<String>, Option<String>)> {
    let out = cfn
        .describe_change_set()
        .change_set_name(id)
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
    Ok((out.stack_name().map(str::to_owned), out.execution_status().map(|s| s.as_str().to_owned())))
}

/// Every resource change of a complete change set, all pages, with or without property values.
async fn described(cfn: &Cfn, stack: &str, id: &str, values: bool) -> Result<Vec<ResourceChange>> {
    let mut changes = Vec::new();
    let mut token = None;
    loop {
        let page = cfn
            .describe_change_set()
            .change_set_name(id)
            .stack_name(stack)
            .include_property_values(values)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("describe change set {id}"), &e))?;
        changes.extend(page.changes().iter().filter_map(|c| c.resource_change()).map(convert));
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(changes),
        }
    }
}

/// A change set that exists, and what it would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub stack: String,
    /// The change set's ID (its ARN on AWS).
    pub id: String,
    pub review: Review,
}

/// What a change set is created from.
pub struct ChangeSetRequest {
    pub template: TemplateSource,
    pub parameters: BTreeMap<String, String>,
    /// Parameters that take their previous values (`UsePreviousValue`), as the CDK keeps what
    /// a deploy does not give.
    pub keep: Vec<String>,
    /// The stack's own tags, to which [`APP_TAG`] is added: a change set's tags replace the
    /// stack's.
    pub tags: BTreeMap<String, String>,
    /// UPDATE when the stack exists, CREATE otherwise.
    pub exists: bool,
    /// Adopt resources that exist under the template's names (`ImportExistingResources`).
    pub import_existing: bool,
}

/// Creates a change set, waits for it, and reviews it. `None` when there is nothing to change
/// (the change set is deleted again).
pub async fn plan(
    cfn: &Cfn,
    stack: &str,
    request: ChangeSetRequest,
    progress: Report<'_>,
) -> Result<Option<PlannedChange>> {
    let ChangeSetRequest { template, parameters, keep, tags, exists, import_existing } = request;
    // Unique per call: two plans in one second (a diff, then a deploy) must not collide.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("deploy-{}-{:09}", now.as_secs(), now.subsec_nanos());
    let mut create = cfn
        .create_change_set()
        .stack_name(stack)
        .change_set_name(&name)
        .change_set_type(if exists { ChangeSetType::Update } else { ChangeSetType::Create })
        .capabilities(Capability::CapabilityIam);
    if import_existing {
        create = create.import_existing_resources(true);
    }
    for (k, v) in merged_tags(&tags) {
        create = create.tags(aws_sdk_cloudformation::types::Tag::builder().key(k).value(v).build());
    }
    create = match template {
        TemplateSource::Body(b) => create.template_body(b),
        TemplateSource::Url(u) => create.template_url(u),
    };
    for (k, v) in &parameters {
        create = create.parameters(Parameter::builder().parameter_key(k).parameter_value(v).build());
    }
    for k in &keep {
        create = create.parameters(Parameter::builder().parameter_key(k).use_previous_value(true).build());
    }
    let id = create
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("create a change set for {stack}"), &e))?
        .id()
        .unwrap_or(&name)
        .to_owned();

    Ok(review_change_set(cfn, stack, &id, progress).await?.map(|review| PlannedChange {
        stack: stack.to_owned(),
        id,
        review,
    }))
}

/// The tag every deploy puts on the stack: `destroy` acts only on stacks that carry it.
pub const APP_TAG: (&str, &str) = ("serverlesspresso:app", "metrics");

/// The stack's tags with [`APP_TAG`] set: what a change set must carry not to drop any.
pub fn merged_tags(existing: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = existing.clone();
    tags.insert(APP_TAG.0.to_owned(), APP_TAG.1.to_owned());
    tags
}

/// The tags of a described stack.
pub fn tags_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.tags().iter().filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned()))).collect()
}

fn convert(c: &aws_sdk_cloudformation::types::ResourceChange) -> ResourceChange {
    let details = c
        .details()
        .iter()
        .filter_map(|d| Some((d, d.target()?)))
        .map(|(d, t)| guard::Detail {
            target: guard::Target {
                attribute: t.attribute().map(|a| a.as_str().into()),
                name: t.name().map(str::to_owned),
                path: t.path().map(str::to_owned),
                before_value: t.before_value().map(str::to_owned),
                after_value: t.after_value().map(str::to_owned),
                attribute_change_type: t.attribute_change_type().map(|a| a.as_str().into()),
                requires_recreation: t.requires_recreation().map(|r| r.as_str().into()),
            },
            evaluation: d.evaluation().map(|e| e.as_str().into()),
            change_source: d.change_source().map(|s| s.as_str().into()),
            causing_entity: d.causing_entity().map(str::to_owned),
        })
        .collect();
    ResourceChange {
        // No action at all is not a change this guard knows: it fails closed on it.
        action: c.action().map_or(guard::Action::Unknown(String::new()), |a| a.as_str().into()),
        logical_resource_id: c.logical_resource_id().unwrap_or_default().to_owned(),
        physical_resource_id: c.physical_resource_id().map(str::to_owned),
        resource_type: c.resource_type().unwrap_or_default().to_owned(),
        replacement: c.replacement().map(|r| r.as_str().into()),
        policy_action: c.policy_action().map(|p| p.as_str().into()),
        details,
    }
}

/// Deletes a change set; a failure is only reported, it does not hide the real outcome.
pub async fn delete_change_set(cfn: &Cfn, stack: &str, id: &str, progress: Report<'_>) {
    if let Err(e) = cfn.delete_change_set().change_set_name(id).stack_name(stack).send().await {
        progress(Progress::ChangeSetLeftOver { id: id.to_owned(), message: sdk(&e) });
    }
}

/// IDs of the events the stack has now, all pages, so that [`follow`] reports only newer ones
/// (by ID, not by time: the local clock may differ from AWS's).
pub async fn event_ids(cfn: &Cfn, stack: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut pages = cfn.describe_stack_events().stack_name(stack).into_paginator().send();
    while let Some(Ok(page)) = pages.next().await {
        ids.extend(page.stack_events().iter().filter_map(|e| e.event_id().map(str::to_owned)));
    }
    ids
}

/// The events not in `seen`, oldest first: pages (newest first) are read until one holds an
/// event already seen, so a long history costs one page per poll, and a burst of more than a
/// page is not cut short.
async fn new_events(
    cfn: &Cfn,
    stack: &str,
    seen: &HashSet<String>,
) -> std::result::Result<
    Vec<aws_sdk_cloudformation::types::StackEvent>,
    aws_sdk_cloudformation::error::SdkError<
        aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsError,
    >,
> {
    let mut fresh = Vec::new();
    let mut pages = cfn.describe_stack_events().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page?;
        let before = fresh.len();
        fresh.extend(page.stack_events().iter().filter(|e| !seen.contains(e.event_id().unwrap_or_default())).cloned());
        if fresh.len() - before < page.stack_events().len() {
            break;
        }
    }
    fresh.reverse();
    Ok(fresh)
}

/// Reports stack events until the stack settles; `Ok(None)` on success, else how it failed.
/// When `deleting`, a stack that is gone counts as success. An update's settled status counts
/// only once the stack's own event with that status has arrived: read right after
/// ExecuteChangeSet, DescribeStacks may still show the status from before the update.
pub async fn follow(
    cfn: &Cfn,
    stack: &str,
    mut seen: HashSet<String>,
    deleting: bool,
    progress: Report<'_>,
) -> Result<Option<StackFailure>> {
    let mut first_failure: Option<String> = None;
    let mut unexecuted = 0;
    // The status of the newest event of the stack itself since following began.
    let mut stack_event: Option<String> = None;
    loop {
        let events = match new_events(cfn, stack, &seen).await {
            Ok(events) => events,
            Err(e) if deleting && is_missing_stack(&e) => return Ok(None),
            Err(e) => return Err(DeployError::aws(format!("read the events of {stack}"), &e)),
        };
        for e in events {
            seen.insert(e.event_id().unwrap_or_default().to_owned());
            let event = StackEvent {
                time: e.timestamp().map(|t| t.to_string()).unwrap_or_default(),
                logical_id: e.logical_resource_id().unwrap_or_default().to_owned(),
                resource_type: e.resource_type().unwrap_or_default().to_owned(),
                status: e.resource_status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: e.resource_status_reason().filter(|r| !r.is_empty()).map(str::to_owned),
            };
            if event.resource_type == STACK_TYPE && event.logical_id == stack {
                stack_event = Some(event.status.clone());
            }
            if event.failed() && first_failure.is_none() {
                if let Some(reason) = &event.reason {
                    first_failure = Some(format!("{}: {reason}", event.logical_id));
                }
            }
            progress(Progress::StackEvent(event));
        }
        match stack_status(cfn, stack).await? {
            None if deleting => return Ok(None),
            None => return Err(DeployError::Disappeared(stack.to_owned())),
            // Executed, yet still waiting for a change set: after a minute, it never started
            // (another change set was executed, or it was deleted) instead of waiting forever.
            Some(StackStatus::ReviewInProgress) if !deleting => {
                unexecuted += 1;
                if unexecuted > 30 {
                    return Err(DeployError::NotStarted(stack.to_owned()));
                }
            }
            Some(status) => {
                let confirmed = deleting || stack_event.as_deref() == Some(status.as_str());
                match status.settled() {
                    Some(ok) if confirmed => {
                        let ok = ok && !(deleting && status != StackStatus::DeleteComplete);
                        return Ok((!ok).then(|| StackFailure {
                            stack: stack.to_owned(),
                            status: status.as_str().to_owned(),
                            first_failure,
                        }));
                    }
                    // Settled, but not by this update (yet): a minute of that and it never began.
                    Some(_) if stack_event.is_none() => {
                        unexecuted += 1;
                        if unexecuted > 30 {
                            return Err(DeployError::NotStarted(stack.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The type CloudFormation gives a stack's own events.
const STACK_TYPE: &str = "AWS::CloudFormation::Stack";

/// The stack's policy as CloudFormation holds it (`None`: it has none).
pub async fn stack_policy(cfn: &Cfn, stack: &str) -> Result<Option<serde_json::Value>> {
    let out = cfn
        .get_stack_policy()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("read the stack policy of {stack}"), &e))?;
    match out.stack_policy_body() {
        None | Some("") => Ok(None),
        // A policy that is not JSON is not ours: it differs from what the stack must have.
        Some(body) => Ok(Some(serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.to_owned())))),
    }
}

/// Sets the stack's policy (what CloudFormation lets an update do to each resource).
pub async fn set_stack_policy(cfn: &Cfn, stack: &str, policy: &serde_json::Value) -> Result<()> {
    cfn.set_stack_policy()
        .stack_name(stack)
        .stack_policy_body(policy.to_string())
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("set the stack policy of {stack}"), &e))?;
    Ok(())
}

/// Turns the stack's termination protection on or off.
pub async fn protect(cfn: &Cfn, stack: &str, on: bool) -> Result<()> {
    cfn.update_termination_protection().stack_name(stack).enable_termination_protection(on).send().await.map_err(
        |e| DeployError::aws(format!("turn termination protection {} for {stack}", if on { "on" } else { "off" }), &e),
    )?;
    Ok(())
}

/// The stack's outputs.
pub async fn outputs(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| DeployError::NoStack(stack.to_owned()))?;
    Ok(outputs_of(&s))
}

/// The outputs of a described stack.
pub fn outputs_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value().unwrap_or_default().to_owned())))
        .collect()
}

/// A resource of a deployed stack: its type and physical ID (empty when the endpoint gives
/// none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    pub resource_type: String,
    pub physical_id: String,
}

/// The stack's resources, by logical ID: every page of ListStackResources
/// (DescribeStackResources stops at 100).
pub async fn resources(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, Deployed>> {
    let mut out = BTreeMap::new();
    let mut pages = cfn.list_stack_resources().stack_name(stack).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| DeployError::aws(format!("list the resources of {stack}"), &e))?;
        for r in page.stack_resource_summaries() {
            let deployed = Deployed {
                resource_type: r.resource_type().unwrap_or_default().to_owned(),
                physical_id: r.physical_resource_id().unwrap_or_default().to_owned(),
            };
            out.insert(r.logical_resource_id().unwrap_or_default().to_owned(), deployed);
        }
    }
    Ok(out)
}

/// The parameters the stack was last deployed with.
pub async fn deployed_parameters(cfn: &Cfn, stack: &str) -> Result<BTreeMap<String, String>> {
    let s = describe(cfn, stack).await?.ok_or_else(|| DeployError::NoStack(stack.to_owned()))?;
    Ok(parameters_of(&s))
}

/// The parameters of a described stack.
pub fn parameters_of(s: &aws_sdk_cloudformation::types::Stack) -> BTreeMap<String, String> {
    s.parameters()
        .iter()
        .filter_map(|p| Some((p.parameter_key()?.to_owned(), p.parameter_value().unwrap_or_default().to_owned())))
        .collect()
}

/// Whether the described stack `deployed` already runs `template` with `parameters` (as the
/// CDK CLI checks before deploying): then there is nothing to change.
pub async fn is_current(
    cfn: &Cfn,
    deployed: &aws_sdk_cloudformation::types::Stack,
    template: &serde_json::Value,
    parameters: &BTreeMap<String, String>,
) -> Result<bool> {
    let name = deployed.stack_name().unwrap_or_default();
    Ok(parameters_of(deployed) == *parameters && deployed_template(cfn, name).await? == *template)
}

/// The deployed template (as submitted), parsed.
pub async fn deployed_template(cfn: &Cfn, stack: &str) -> Result<serde_json::Value> {
    let out = cfn
        .get_template()
        .stack_name(stack)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("get the template of {stack}"), &e))?;
    let body = out.template_body().unwrap_or_default();
    serde_json::from_str(body).or_else(|_| serde_yaml::from_str(body)).map_err(|e: serde_yaml::Error| {
        DeployError::DeployedTemplate { stack: stack.to_owned(), message: e.to_string() }
    })
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
    fn an_incomplete_description_is_completed_and_what_stays_missing_is_a_loss() {
        let reason = "[WARN] --include-property-values option can return incomplete ChangeSet data because: Logical Id: MetricsTable, failed property validation; Logical Id: Gone9, failed property validation";
        assert_eq!(named_logical_ids(reason), ["MetricsTable", "Gone9"]);
        assert!(named_logical_ids("nothing named").is_empty());
        let modify = |id: &str, ty: &str| ResourceChange::new(guard::Action::Modify, id, ty);
        let with = vec![modify("PublishMetrics", "AWS::Lambda::Function")];
        let mut table = modify("MetricsTable", "AWS::DynamoDB::Table");
        table.replacement = Some(guard::Replacement::True);
        let without = vec![modify("PublishMetrics", "AWS::Lambda::Function"), table];
        let merged = merge_incomplete(with, without, reason);
        let ids: Vec<&str> = merged.iter().map(|c| c.logical_resource_id.as_str()).collect();
        assert_eq!(ids, ["PublishMetrics", "MetricsTable", "Gone9"]);
        let review = guard::review(merged);
        let refused: Vec<(&str, &str)> =
            review.refused.iter().map(|r| (r.change.logical_resource_id.as_str(), r.rule)).collect();
        assert_eq!(refused, [("MetricsTable", "replaced"), ("Gone9", "not-described")]);
        // Without the marker's IDs, a dropped change the second description has is still seen.
        let complete = merge_incomplete(
            vec![],
            vec![modify("Q", "AWS::SQS::Queue")],
            "[WARN] --include-property-values option can return incomplete ChangeSet data",
        );
        assert_eq!(guard::review(complete).refused[0].rule, "maybe-replaced");
    }

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
    fn progress_prints_itself_and_serializes_tagged() {
        let event = StackEvent {
            time: "t".into(),
            logical_id: "MetricsTable".into(),
            resource_type: "AWS::DynamoDB::Table".into(),
            status: "CREATE_FAILED".into(),
            reason: Some("no".into()),
        };
        assert!(event.failed());
        let p = Progress::StackEvent(event);
        assert!(p.to_string().ends_with("CREATE_FAILED  no"), "{p}");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!((v["progress"].as_str(), v["logicalId"].as_str()), (Some("stackEvent"), Some("MetricsTable")));
        let planned = PlannedChange { stack: "s".into(), id: "cs".into(), review: guard::review(vec![]) };
        let v = serde_json::to_value(Progress::Reviewed(planned)).unwrap();
        assert_eq!((v["progress"].as_str(), v["id"].as_str()), (Some("reviewed"), Some("cs")));
        let asset = Progress::Asset { name: "f".into(), bytes: 1, url: "s3://b/k".into(), uploaded: false };
        assert_eq!(serde_json::to_value(&asset).unwrap()["progress"], "asset");
        assert!(asset.to_string().ends_with("s3://b/k  already there"), "{asset}");
    }

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
