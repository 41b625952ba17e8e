//! `assets`: checks the Lambda zips cargo-lambda built, makes them reproducible, and prints
//! their SHA-256 keys (the template's `<Function>CodeKey` parameters).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Prepare the functions' zips for upload and print their content-addressed S3 keys.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where cargo-lambda wrote the zips [default: $CARGO_TARGET_DIR/lambda or target/lambda].
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
    /// Print only `Parameter=key` pairs, for `aws cloudformation deploy --parameter-overrides`.
    #[arg(long)]
    parameter_overrides: bool,
    #[command(flatten)]
    stack: metrics_stack::StackArgs,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let (_, target) = deploy_cli::target(&args.stack).context("the stack is invalid")?;
    let lambda_dir = args.lambda_dir.unwrap_or_else(deploy::assets::default_lambda_dir);
    let mut overrides = Vec::new();
    for asset in &target.assets {
        let p = deploy::assets::package(asset, &lambda_dir)?;
        if !args.parameter_overrides {
            println!(
                "{:<18} {:>9} bytes  {}  {}={}",
                asset.name,
                p.bytes,
                p.path.display(),
                asset.key_parameter,
                p.key()
            );
        }
        overrides.push(format!("{}={}", asset.key_parameter, p.key()));
    }
    println!("{}", overrides.join(" "));
    Ok(())
}
