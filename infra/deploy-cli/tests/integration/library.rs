//! What the deploy library's moto tests share: moto with the asset bucket bootstrapped, stand-in
//! Lambda zips, the app's standalone target, and a [`Deployer`] on moto or on a test's stand-in
//! in front of it. The tests call the library and assert on the values it returns (outcomes,
//! plans, progress); the binaries' own output is the smoke tests' business.
//!
//! The zips are small stand-ins with an arm64 ELF header (moto stores functions but never runs
//! them); the real zips are built and checked by `tests/integration/arm64_build.rs`.

use test_support as support;

use deploy::cloudformation::{PlannedChange, Progress};
use deploy::deployer::{Approval, DeployOptions, DeployOutcome, Deployer, Target};
use deploy::error::DeployError;
use metrics_stack::{MetricsStack, StackArgs, StackChoice};
use support::moto::Moto;

pub const STACK: &str = "serverlesspresso-metrics-standalone";
pub const BUCKET: &str = "serverlesspresso-assets-test";

pub struct App {
    pub moto: Moto,
    pub zips: tempfile::TempDir,
    pub stack: MetricsStack,
    pub target: Target,
}

impl App {
    /// moto, the asset bucket bootstrapped on it, and stand-in zips.
    pub async fn start() -> App {
        let app = App::unbootstrapped();
        app.deployer().await.bootstrap(BUCKET, false, &mut |_| ()).await.expect("the asset bucket");
        app
    }

    /// moto and stand-in zips, no bucket yet.
    pub fn unbootstrapped() -> App {
        let moto = Moto::start();
        let zips = tempfile::tempdir().unwrap();
        support::fake_zips(zips.path());
        let selection = StackArgs { stack: StackChoice::Standalone, stack_name: None };
        let (stack, target) = deploy_cli::target(&selection).unwrap();
        assert_eq!(target.name, STACK);
        App { moto, zips, stack, target }
    }

    /// The options that deploy the standalone stack with the stand-in zips, unasked.
    pub fn options(&self) -> DeployOptions {
        DeployOptions {
            asset_bucket: Some(BUCKET.to_owned()),
            lambda_dir: Some(self.zips.path().to_owned()),
            yes: true,
            ..Default::default()
        }
    }

    /// A deployer straight on moto.
    pub async fn deployer(&self) -> Deployer {
        Deployer::new(&self.moto.sdk_config().await)
    }

    /// The target again, for a test that changes its copy.
    pub fn target(&self) -> Target {
        deploy_cli::target(&StackArgs { stack: StackChoice::Standalone, stack_name: None }).unwrap().1
    }

    /// The standalone stack deployed straight on moto.
    pub async fn deployed(self) -> App {
        let (outcome, _) = deploy(&self.deployer().await, &self.target, &self.options()).await;
        assert!(matches!(outcome, Ok(DeployOutcome::Deployed { .. })), "{outcome:?}");
        self
    }
}

/// A deployer on `endpoint` (a stand-in in front of moto).
pub async fn deployer_at(endpoint: &str) -> Deployer {
    Deployer::new(&support::moto::sdk_config_at(endpoint).await)
}

/// Deploys `t` with `options`, approving whatever is asked: the outcome and the progress
/// reported on the way.
pub async fn deploy(
    d: &Deployer,
    t: &Target,
    options: &DeployOptions,
) -> (Result<DeployOutcome, DeployError>, Vec<Progress>) {
    let mut events = Vec::new();
    let outcome = d.deploy(t, options, &mut |_: &PlannedChange| Approval::Yes, &mut |p| events.push(p)).await;
    (outcome, events)
}

/// The reviews among `events`.
pub fn reviews(events: &[Progress]) -> Vec<&PlannedChange> {
    events
        .iter()
        .filter_map(|p| match p {
            Progress::Reviewed(planned) => Some(planned),
            _ => None,
        })
        .collect()
}
