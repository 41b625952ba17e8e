//! `report`: the metrics per day from the metrics table, as a table, JSON or CSV.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, ValueEnum};
use connection::Connection;
use metrics_stack::StackArgs;

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
    /// The metrics table [default: the selected stack's].
    #[arg(long)]
    table: Option<String>,
    #[command(flatten)]
    stack: StackArgs,
    #[command(flatten)]
    connection: Connection,
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = matches!(args.format, Format::Json);
    connection::run_main(run(args), json)
}

async fn run(args: Args) -> Result<bool> {
    let table = match args.table {
        Some(t) => t,
        None => {
            let app = args.stack.build().context("the stack is invalid")?;
            let table = app.table();
            table
                .physical_name()
                .map(str::to_owned)
                .with_context(|| format!("{} has no physical name", table.construct()))?
        }
    };
    let ddb = aws_sdk_dynamodb::Client::new(&args.connection.sdk_config().await);
    let counters = report::counters(&ddb, &table).await?;
    let days = report::days(&counters, args.from, args.to)?;
    match args.format {
        Format::Table if days.is_empty() => println!("no metrics in {table} for that range"),
        Format::Table => print!("{}", report::table(&days)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&days).context("cannot serialize the report")?),
        Format::Csv => print!("{}", report::csv(&days)),
    }
    if let Some(path) = args.chart {
        let svg = report::chart(&days)?;
        std::fs::write(&path, svg).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(true)
}
