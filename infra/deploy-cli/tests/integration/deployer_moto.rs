//! The deploy library itself (not the binary) on moto: it returns its plan, outcome and
//! progress as values.

use test_support as support;

use deploy::cloudformation::Progress;
use deploy::deployer::{Approval, DeployOptions, DeployOutcome, Deployer, Plan};
use metrics_stack::{StackArgs, StackChoice};
use support::moto::Moto;

const BUCKET: &str = "serverlesspresso-assets-library";

#[tokio::test(flavor = "multi_thread")]
async fn the_library_returns_its_outcome_plan_and_progress_as_values() {
    let moto = Moto::start();
    let zips = tempfile::tempdir().unwrap();
    support::fake_zips(zips.path());
    let config = moto.sdk_config().await;
    let deployer = Deployer::new(&config);
    let selection = StackArgs { stack: StackChoice::Standalone, stack_name: None };
    let (app, target) = deploy_cli::target(&selection).unwrap();
    let mut events: Vec<Progress> = Vec::new();
    deployer.bootstrap(BUCKET, false, &mut |p| events.push(p)).await.unwrap();
    let options = DeployOptions {
        asset_bucket: Some(BUCKET.into()),
        lambda_dir: Some(zips.path().to_owned()),
        yes: true,
        ..Default::default()
    };
    let mut asked = 0;
    let outcome = deployer
        .deploy(
            &target,
            &options,
            &mut |planned| {
                asked += 1;
                assert!(planned.review.refused.is_empty(), "a new stack loses nothing: {:?}", planned.review.refused);
                Approval::Yes
            },
            &mut |p| events.push(p),
        )
        .await
        .unwrap();
    match &outcome {
        DeployOutcome::Deployed { stack, .. } => assert_eq!(stack, &target.name),
        other => panic!("{other:?}"),
    }
    assert!(outcome.succeeded());
    assert!(asked <= 1);
    // Both zips went up, under their content hashes.
    let uploaded: Vec<&str> = events
        .iter()
        .filter_map(|p| match p {
            Progress::Asset { name, uploaded: true, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(uploaded.len(), app.functions().len(), "{events:?}");

    // The same template again: the plan and the outcome say nothing changes.
    let plan = deployer.plan(&target, &options, &mut |_| ()).await.unwrap();
    assert!(matches!(&plan, Plan::UpToDate { stack } if stack == &target.name), "{plan:?}");
    let again = deployer.deploy(&target, &options, &mut |_| panic!("nothing to approve"), &mut |_| ()).await.unwrap();
    assert_eq!(again, DeployOutcome::UpToDate { stack: target.name.clone() });
}
