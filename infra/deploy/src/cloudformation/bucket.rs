//! The asset bucket: bootstrap, content-addressed uploads, where a template too large to
//! pass inline goes.

use std::fmt;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client as S3;
use serde::Serialize;

use super::*;
use crate::error::{sdk, DeployError};

type Result<T, E = DeployError> = std::result::Result<T, E>;

/// CloudFormation's limit on an inline template body; larger ones go through S3.
pub const MAX_TEMPLATE_BODY: usize = 51_200;

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
}
