//! `synth`: writes the app's templates into `synth-out/`, or checks that they are current.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

/// Synthesize the Serverlesspresso metrics stacks into CloudFormation templates.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Output directory [default: synth-out, or synth-out/ENV with --env].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write nothing; exit 1 and name the files when the output directory is out of date.
    #[arg(long)]
    check: bool,
    /// Also render each architecture diagram to SVG with graphviz's `dot` (not committed: its
    /// bytes depend on the graphviz version).
    #[arg(long, conflicts_with = "check")]
    render: bool,
    /// Synthesize only the stack of another environment (every physical name suffixed
    /// `-ENV`) instead of the app's default stacks.
    #[arg(long, value_name = "ENV")]
    env: Option<String>,
    /// With --env: import this existing bus instead of creating `Serverlesspresso-ENV`. The
    /// production bus `Serverlesspresso` is refused.
    #[arg(long, value_name = "BUS", requires = "env")]
    import_bus: Option<String>,
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
    let (stacks, default_out) = match &args.env {
        None => (metrics_stack::app(), PathBuf::from("synth-out")),
        Some(env) => (
            metrics_stack::MetricsStackProps::for_environment(env, args.import_bus.as_deref())
                .and_then(|props| metrics_stack::metrics_stack(&props))
                .map(|m| vec![m]),
            Path::new("synth-out").join(env),
        ),
    };
    let stacks = stacks.context("the stack is invalid; nothing was written")?;
    let artifacts = match &args.env {
        None => metrics_stack::artifacts(&stacks),
        Some(_) => cfn::synth::artifacts(stacks.iter().map(metrics_stack::MetricsStack::stack)),
    };
    let artifacts = artifacts.context("the stack is invalid; nothing was written")?;
    // What each stack's capacity comes to, and what it will do that a reader should know.
    let summarize = || {
        for m in &stacks {
            println!("{}: {}", m.name(), m.capacity());
            for w in m.stack().warnings() {
                eprintln!("warning: {}: {w}", m.name());
            }
        }
    };
    let out = args.out.unwrap_or(default_out);
    if args.check {
        let stale = cfn::synth::stale(&out, &artifacts)?;
        if stale.is_empty() {
            println!("{} is up to date ({} files)", out.display(), artifacts.len());
            summarize();
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("{} is stale:", out.display());
        for (path, why) in stale {
            eprintln!("  {} ({why:?})", path.display());
        }
        eprintln!("run `cargo run --bin synth` and commit the result");
        return Ok(ExitCode::FAILURE);
    }
    let written = cfn::synth::write(&out, &artifacts)?;
    for (w, a) in written.iter().zip(&artifacts) {
        println!("{} {} ({})", if w.unchanged { "unchanged" } else { "wrote" }, w.path.display(), a.summary());
    }
    summarize();
    if args.render {
        for dot in written.iter().map(|w| &w.path).filter(|p| p.extension().is_some_and(|e| e == "dot")) {
            let svg = dot.with_extension("svg");
            let status = std::process::Command::new("dot").arg("-Tsvg").arg(dot).arg("-o").arg(&svg).status();
            match status {
                Ok(s) if s.success() => println!("rendered {}", svg.display()),
                Ok(s) => anyhow::bail!("dot failed on {} ({s})", dot.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                    "graphviz is not installed, so the diagrams were written as .dot only: install it (`apt-get install graphviz`) to render them"
                ),
                Err(e) => anyhow::bail!("cannot run dot: {e}"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
