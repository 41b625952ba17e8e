//! The tools' side: the connection flags every binary flattens into its CLI, and the `main` of
//! the async binaries.

use std::future::Future;
use std::process::ExitCode;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Where the commands connect: region, profile and endpoint, each optional (the SDK's default
/// chain otherwise). The same arguments for every binary (flattened into each one's CLI).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Connection {
    /// AWS region [default: the SDK's chain: AWS_REGION, the profile, ...].
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// Named profile of the shared AWS config and credentials files.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Another endpoint (a local one such as moto's); AWS_ENDPOINT_URL works too.
    #[arg(long, global = true)]
    pub endpoint_url: Option<String>,
    /// Use the fixed credentials local endpoints accept instead of the default chain (which
    /// would look for real ones, up to the instance metadata endpoint).
    #[arg(long, global = true)]
    pub local_credentials: bool,
}

impl Connection {
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(crate::https_client());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if self.local_credentials {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "local",
            ));
            if self.region.is_none() {
                loader = loader.region(Region::new("us-east-1"));
            }
        }
        loader.load().await
    }

    /// Whether a custom endpoint is set (the flag or `AWS_ENDPOINT_URL`): local endpoints want
    /// path-style S3 addressing, having no per-bucket host names.
    pub fn custom_endpoint(&self) -> bool {
        self.endpoint_url.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some()
    }

    /// Whether requests go to a plain-HTTP endpoint (a local one such as moto's).
    pub fn plain_http(&self) -> bool {
        let env = std::env::var("AWS_ENDPOINT_URL").ok();
        self.endpoint_url.as_deref().or(env.as_deref()).is_some_and(|e| e.starts_with("http://"))
    }
}

/// The `main` of the async binaries: runs `work` on a tokio runtime; `Ok(true)` exits 0,
/// `Ok(false)` exits 1, an error is printed with its causes and exits 1. With `json`, the error
/// is also the one JSON document on stdout ([`error_json`]).
pub fn run_main(work: impl Future<Output = anyhow::Result<bool>>, json: bool) -> ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(work));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            if json {
                println!("{}", error_json(&e));
            }
            ExitCode::FAILURE
        }
    }
}

/// An error as the one JSON document a `--json` run prints: the message with its causes, and
/// each cause apart.
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    serde_json::json!({
        "error": format!("{e:#}"),
        "causes": e.chain().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_document_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied (os error 13)");
        let e = anyhow::Error::new(io).context("cannot read synth-out/x.json");
        let doc = error_json(&e);
        assert_eq!(doc["error"], "cannot read synth-out/x.json: Permission denied (os error 13)");
        assert_eq!(doc["causes"].as_array().unwrap().len(), 2);
    }
}
