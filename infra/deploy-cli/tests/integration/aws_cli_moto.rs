//! The plain AWS CLI path of the README (awscli from the tools' venv), against moto: upload the
//! zips under their SHA-256, then `aws cloudformation deploy` the synthesized template with the
//! keys from `assets --parameter-overrides`. Keep the script in step with the README.

use test_support as support;

use std::process::Command;

use aws_sdk_cloudformation::types::StackStatus;
use support::moto::Moto;

/// The README's commands, with the paths of this test.
const SCRIPT: &str = r#"
set -euo pipefail
aws s3 mb "s3://$BUCKET"
"$ASSETS" --lambda-dir "$LAMBDA"             # normalizes the zips, prints their keys
for fn in publish-metrics events-load-test; do
  zip=$LAMBDA/$fn/bootstrap.zip
  aws s3 cp "$zip" "s3://$BUCKET/$fn/$(sha256sum "$zip" | cut -d' ' -f1).zip"
done
aws cloudformation deploy \
  --template-file "$TEMPLATE" \
  --stack-name serverlesspresso-metrics-standalone \
  --capabilities CAPABILITY_IAM \
  --parameter-overrides AssetBucket="$BUCKET" $("$ASSETS" --lambda-dir "$LAMBDA" --parameter-overrides)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn aws_cloudformation_deploy_ships_the_template_and_zips() {
    let moto = Moto::start();
    let lambda = tempfile::tempdir().unwrap();
    support::fake_zips(lambda.path());
    let template = support::workspace_root().join("synth-out/serverlesspresso-metrics-standalone.template.yaml");
    let path = format!("{}:{}", support::venv().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = support::with_test_credentials(
        Command::new("bash")
            .args(["-c", SCRIPT])
            .env("PATH", path)
            .env("BUCKET", "cli-assets")
            .env("ASSETS", env!("CARGO_BIN_EXE_assets"))
            .env("LAMBDA", lambda.path())
            .env("TEMPLATE", &template)
            .env("AWS_ENDPOINT_URL", &moto.endpoint),
    )
    .output()
    .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");

    let config = moto.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let stacks = cfn.describe_stacks().stack_name("serverlesspresso-metrics-standalone").send().await.unwrap();
    assert_eq!(stacks.stacks()[0].stack_status(), Some(&StackStatus::CreateComplete), "{log}");
    let lambda_client = aws_sdk_lambda::Client::new(&config);
    for (function, name) in [
        ("PublishMetrics", order_events::assets::PUBLISH_METRICS),
        ("EventsLoadTest", order_events::assets::EVENTS_LOAD_TEST),
    ] {
        let f = lambda_client.get_function().function_name(function).send().await.unwrap();
        let zip = std::fs::read(lambda.path().join(name).join("bootstrap.zip")).unwrap();
        let size = f.configuration().unwrap().code_size();
        assert_eq!(size, zip.len() as i64, "{function} runs the uploaded zip");
    }
}
