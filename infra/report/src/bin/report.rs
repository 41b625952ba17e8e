//! `report`: the metrics per day from the metrics table, as a table, JSON or CSV.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;
use clap::{Parser, ValueEnum};
use connection::Connection;

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
    #[command(flatten)]
    table: report::cli::TableArgs,
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
    #[arg(long, value_name = "FILE.svg", conflicts_with = "explain")]
    chart: Option<std::path::PathBuf>,
    /// List what made DAY's numbers: each counted order's event, times and drink, summed and
    /// set against the day's counters (fails when they differ within the dedupe window).
    #[arg(long, value_name = "DAY", conflicts_with_all = ["from", "to"])]
    explain: Option<NaiveDate>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = matches!(args.format, Format::Json);
    connection::run_main(run(args), json)
}

async fn run(args: Args) -> Result<bool> {
    let table = args.table.name()?;
    let ddb = aws_sdk_dynamodb::Client::new(&args.connection.sdk_config().await);
    let counters = report::counters(&ddb, &table).await?;
    if let Some(day) = args.explain {
        let records = report::explain::provenance(&ddb, &table, day).await?;
        let explanation = report::explain::explain(day, &counters, records, chrono::Utc::now().date_naive())?;
        match args.format {
            Format::Json => {
                println!("{}", serde_json::to_string_pretty(&explanation).context("cannot serialize the explanation")?)
            }
            Format::Table => print!("{explanation}"),
            Format::Csv => anyhow::bail!("--explain prints a table or JSON (--format json), not CSV"),
        }
        return Ok(explanation.reconciles() || !explanation.within_window);
    }
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
