//! `synth`: writes the app's templates into `synth-out/`, or checks that they are current.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Synthesize the Serverlesspresso metrics stacks into CloudFormation templates.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Output directory.
    #[arg(long, default_value = "synth-out")]
    out: PathBuf,
    /// Write nothing; exit 1 and name the files when the output directory is out of date.
    #[arg(long)]
    check: bool,
    /// Synthesize only the stack of another environment (every physical name suffixed
    /// `-ENV`) instead of the app's default stacks.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stacks = match &args.env {
        None => infra::metrics::app(),
        Some(env) => {
            infra::metrics::metrics_stack(&infra::metrics::MetricsStackProps::for_environment(env)).map(|s| vec![s])
        }
    }
    .context("the stack is invalid; nothing was written")?;
    let artifacts = infra::synth::artifacts(&stacks).context("cannot render the templates; nothing was written")?;
    if args.check {
        let stale = infra::synth::stale(&args.out, &artifacts)?;
        if stale.is_empty() {
            println!("{} is up to date ({} files)", args.out.display(), artifacts.len());
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{} is stale:", args.out.display());
        for (path, why) in stale {
            eprintln!("  {} ({why:?})", path.display());
        }
        eprintln!("run `cargo run --bin synth` and commit the result");
        return Ok(ExitCode::FAILURE);
    }
    let written = infra::synth::write(&args.out, &artifacts)?;
    for (path, a) in written.iter().zip(&artifacts) {
        println!("wrote {} ({} resources, {} bytes)", path.display(), a.resources, a.contents.len());
    }
    Ok(ExitCode::SUCCESS)
}
