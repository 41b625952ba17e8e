//! Deploying a synthesized stack with CloudFormation, in the spirit of the CDK CLI: publish the
//! Lambda zips under their SHA-256, create a change set, review it with the data-safety
//! [`guard`], execute it while reporting stack events, and return the outputs. The library
//! returns data ([`deployer::Deployer`]); only the binaries print.

pub mod assets;
pub mod cloudformation;
pub mod deployer;
pub mod error;
pub mod guard;
pub mod offline;
pub mod queue;
pub mod redrive;
pub mod status;

use std::future::Future;
use std::process::ExitCode;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The `main` of the async binaries: runs `work` on a tokio runtime; `Ok(true)` exits 0,
/// `Ok(false)` exits 1, an error is printed with its causes and exits 1.
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

/// The HTTPS client every SDK client here uses: rustls on ring (the SDK crates are built
/// without their own, which would bring aws-lc and its C build).
pub fn https_client() -> aws_sdk_s3::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

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

/// Which of the app's stacks a command acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StackChoice {
    /// `serverlesspresso-metrics`: imports the core app's bus (the workshop).
    #[default]
    Workshop,
    /// `serverlesspresso-metrics-standalone`: creates its own bus (a fresh account, local runs).
    Standalone,
}

impl StackChoice {
    pub fn props(self) -> metrics_stack::MetricsStackProps {
        match self {
            StackChoice::Workshop => metrics_stack::MetricsStackProps::default(),
            StackChoice::Standalone => metrics_stack::MetricsStackProps::standalone(),
        }
    }
}

/// The stack selection, shared by the binaries that act on a stack.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct StackArgs {
    /// Which of the app's stacks.
    #[arg(long, value_enum, default_value_t, global = true)]
    pub stack: StackChoice,
    /// CloudFormation stack name [default: the stack's own].
    #[arg(long, global = true)]
    pub stack_name: Option<String>,
}

impl Connection {
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client());
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

    /// Whether requests go to a plain-HTTP endpoint (a local one such as moto's).
    pub fn plain_http(&self) -> bool {
        let env = std::env::var("AWS_ENDPOINT_URL").ok();
        self.endpoint_url.as_deref().or(env.as_deref()).is_some_and(|e| e.starts_with("http://"))
    }

    /// An S3 client for `config`. With a custom endpoint, S3 uses path-style addressing (local
    /// endpoints have no per-bucket host names).
    pub fn s3(&self, config: &SdkConfig) -> aws_sdk_s3::Client {
        let custom_endpoint = self.endpoint_url.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(config).force_path_style(custom_endpoint).build(),
        )
    }
}
