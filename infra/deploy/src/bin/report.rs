//! `report`: the metrics per day from the metrics table, as a table, JSON or CSV.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, ValueEnum};
use deploy::{local, report, Connection};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

/// Print the Serverlesspresso business metrics per day.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The metrics table.
    #[arg(long, default_value = "serverlesspresso-metrics-table")]
    table: String,
    /// First day (YYYY-MM-DD), inclusive.
    #[arg(long)]
    from: Option<NaiveDate>,
    /// Last day (YYYY-MM-DD), inclusive.
    #[arg(long)]
    to: Option<NaiveDate>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also draw daily orders per drink as an SVG chart into this file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<std::path::PathBuf>,
    #[arg(long)]
    region: Option<String>,
    #[arg(long)]
    profile: Option<String>,
    /// A local endpoint (such as the one `local` started); AWS_ENDPOINT_URL works too.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Use the fixed credentials local endpoints accept.
    #[arg(long)]
    local_credentials: bool,
}

fn main() -> ExitCode {
    deploy::run_main(run(Args::parse()))
}

async fn run(args: Args) -> Result<bool> {
    let connection = Connection {
        region: args.region,
        profile: args.profile,
        endpoint_url: args.endpoint_url,
        local_credentials: args.local_credentials,
    };
    let ddb = aws_sdk_dynamodb::Client::new(&connection.sdk_config().await);
    let counters = local::counters(&ddb, &args.table).await?;
    let days = report::days(&counters, args.from, args.to);
    match args.format {
        Format::Table if days.is_empty() => println!("no metrics in {} for that range", args.table),
        Format::Table => print!("{}", report::table(&days)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&days).context("cannot serialize the report")?),
        Format::Csv => print!("{}", report::csv(&days)),
    }
    if let Some(path) = args.chart {
        let svg = report::chart(&days).map_err(|e| anyhow::anyhow!("cannot draw the chart: {e}"))?;
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(true)
}
