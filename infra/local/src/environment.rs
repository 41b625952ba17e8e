//! The stack on a local endpoint: a moto server started here (or an endpoint given), the
//! standalone stack deployed to it through the deploy library, moto's own poller for the SQS
//! mapping turned off, and the deployed resources' physical IDs for resolving the functions'
//! environments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connection::Connection;
use deploy::cloudformation::Deployed;
use deploy::deployer::{Approval, DeployOptions, Deployer, Target};
use lambda_local::Credentials;
use metrics_stack::{MetricsStack, StackArgs, StackChoice};

use crate::error::aws;
use crate::functions::{fill_missing, LocalAws};
use crate::LocalError;

/// The asset bucket a local deploy creates.
pub const LOCAL_ASSET_BUCKET: &str = "serverlesspresso-local-assets";

/// Where the endpoint comes from.
#[derive(Clone, Debug, Default)]
pub struct EnvironmentOptions {
    /// An endpoint already running (it should be empty: counts are compared with what a run
    /// sends), or `None` to start moto here.
    pub connection: Connection,
    /// The `moto_server` to start [default: the test tools' venv, then PATH].
    pub moto_server: Option<PathBuf>,
    /// Where cargo-lambda wrote the zips the stack's functions are deployed from.
    pub lambda_dir: Option<PathBuf>,
}

/// The deployed stack on its local endpoint.
pub struct Environment {
    /// Kept alive until the end of the run; dropping it stops the server.
    _moto: Option<MotoServer>,
    pub endpoint: String,
    /// SDK configuration for the endpoint itself.
    pub config: aws_config::SdkConfig,
    /// The stack's typed handles: the physical names the run acts on.
    pub app: MetricsStack,
    pub target: Target,
    /// What the functions call, and as whom.
    pub aws: LocalAws,
    /// The stack's resources by logical ID.
    pub ids: BTreeMap<String, Deployed>,
}

impl Environment {
    /// Starts the endpoint if none is given, deploys the standalone stack to it and prepares
    /// what the functions need. `note` receives each step (for the binary to print).
    pub async fn prepare(
        options: &EnvironmentOptions,
        note: &mut (dyn FnMut(String) + Send),
    ) -> Result<Self, LocalError> {
        let mut moto = None;
        let endpoint = match options.connection.endpoint_url.clone() {
            Some(e) => e,
            None => {
                let server = MotoServer::start(&moto_server(options.moto_server.clone()))?;
                note(format!("moto is listening on {}", server.endpoint));
                let e = server.endpoint.clone();
                moto = Some(server);
                e
            }
        };
        let connection =
            Connection { endpoint_url: Some(endpoint.clone()), local_credentials: true, ..options.connection.clone() };
        // The stack that creates its own bus: nothing else exists on a fresh endpoint.
        let (app, target) = deploy_cli::target(&StackArgs { stack: StackChoice::Standalone, stack_name: None })?;
        let config = connection.sdk_config().await;
        let deployer = Deployer::new(&config);
        let bootstrapped = deployer.bootstrap(LOCAL_ASSET_BUCKET, false, &mut |p| note(p.to_string())).await?;
        note(bootstrapped.to_string());
        let deploy = DeployOptions {
            asset_bucket: Some(LOCAL_ASSET_BUCKET.to_owned()),
            yes: true,
            lambda_dir: options.lambda_dir.clone(),
            ..Default::default()
        };
        let outcome = deployer.deploy(&target, &deploy, &mut |_| Approval::Yes, &mut |p| note(p.to_string())).await?;
        if !outcome.succeeded() {
            return Err(LocalError::Deployed(outcome.to_string()));
        }
        note(outcome.to_string());
        let publish = app.publish().physical_name().unwrap_or_default().to_owned();
        let disabled = disable_mappings(&aws_sdk_lambda::Client::new(&config), &publish).await?;
        note(format!(
            "disabled moto's poller for {disabled} event source mapping(s): this run drives the queue itself"
        ));
        let aws = LocalAws {
            endpoint_url: endpoint.clone(),
            region: config.region().map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
            account_id: deployer.account().await?.to_owned(),
            credentials: Credentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
                session_token: None,
            },
        };
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let mut ids = deploy::cloudformation::resources(&cfn, &target.name).await?;
        let bus = app.bus();
        if let Some(construct) = bus.construct() {
            fill_missing(&mut ids, &construct.id, bus.name());
        }
        Ok(Environment { _moto: moto, endpoint, config, app, target, aws, ids })
    }

    /// The physical name of a handle's resource, or an error naming the construct.
    pub fn named(&self, name: Option<&str>, what: &dyn std::fmt::Display) -> Result<String, LocalError> {
        name.map(str::to_owned).ok_or_else(|| LocalError::Unresolved(format!("{what} has no physical name")))
    }

    /// A queue's URL on the endpoint.
    pub async fn queue_url(&self, sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, LocalError> {
        let out = sqs.get_queue_url().queue_name(name).send().await.map_err(aws(format!("no queue {name}")))?;
        Ok(out.queue_url().unwrap_or_default().to_owned())
    }
}

/// The `moto_server` to start: `given`, else the test tools' venv in this workspace's target
/// directory, else the one on PATH.
pub fn moto_server(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let venv = deploy::assets::default_lambda_dir().with_file_name("tmp").join("tools-venv/bin/moto_server");
        if venv.exists() {
            venv
        } else {
            PathBuf::from("moto_server")
        }
    })
}

/// A moto server this process started; stopped when dropped (Ctrl-C included, as the runtime
/// unwinds).
pub struct MotoServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts `server` (a `moto_server` executable) on 127.0.0.1 and waits until it answers.
    pub fn start(server: &Path) -> Result<Self, LocalError> {
        let start = |source| LocalError::MotoStart { server: server.to_owned(), source };
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(start)?.port();
        let child = std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(start)?;
        let mut moto = MotoServer { child, endpoint: format!("http://127.0.0.1:{port}") };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = moto.child.try_wait().map_err(start)? {
                return Err(LocalError::MotoExited { server: server.to_owned(), status: status.to_string() });
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(LocalError::MotoSilent { addr: addr.to_string() });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops moto's own poller for the function's mappings: it would take messages off the queue
/// to invoke a function it cannot run.
pub async fn disable_mappings(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<usize, LocalError> {
    let out = lambda
        .list_event_source_mappings()
        .function_name(function)
        .send()
        .await
        .map_err(aws("cannot list the mappings"))?;
    let mut n = 0;
    for m in out.event_source_mappings() {
        if let Some(uuid) = m.uuid() {
            lambda
                .update_event_source_mapping()
                .uuid(uuid)
                .enabled(false)
                .send()
                .await
                .map_err(aws("cannot disable a mapping"))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moto_that_cannot_start_is_named_with_the_way_out() {
        let Err(err) = MotoServer::start(Path::new("/nonexistent/moto_server")) else {
            panic!("started a server that does not exist")
        };
        let text = err.to_string();
        assert!(matches!(err, LocalError::MotoStart { .. }), "{err:?}");
        assert!(text.contains("/nonexistent/moto_server") && text.contains("--endpoint-url"), "{text}");
    }
}
