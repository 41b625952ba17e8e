//! `backfill`: counts old order events on purpose (see `publish_metrics::backfill`).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use connection::Connection;
use order_events::capacity::WriteBudget;
use publish_metrics::{backfill::backfill, DynamoStore, Pacer};

/// Count order events older than the dedupe window (16 days), which PublishMetrics refuses, into
/// the metrics table: exactly once each, with a fresh window. Only for events never counted: an
/// order counted more than 17 days ago has lost its dedupe record and would be counted again.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// EventBridge events as JSON, one per line (`-`: standard input), e.g. the bodies of the
    /// dead letters refused as too old.
    #[arg(long, value_name = "FILE")]
    events: std::path::PathBuf,
    #[command(flatten)]
    table: report::cli::TableArgs,
    #[command(flatten)]
    connection: Connection,
    /// Write capacity to use, in WCU per second (1 to 40000, DynamoDB's default per-table
    /// write quota: "Service, account, and table quotas in Amazon DynamoDB"): PublishMetrics
    /// keeps its own share meanwhile, so more than the table's spare capacity gets throttled
    /// (and retried).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=40_000))]
    wcu_per_second: u64,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let json = args.json;
    connection::run_main(run(args), json)
}

async fn run(args: Args) -> Result<bool> {
    let mut text = String::new();
    if args.events.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("cannot read the events from standard input")?;
    } else {
        text = std::fs::read_to_string(&args.events)
            .with_context(|| format!("cannot read the events from {}", args.events.display()))?;
    }
    let events: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
    let table = args.table.name()?;
    let budget = WriteBudget::per_second_milli(args.wcu_per_second * 1000).context("no write budget")?;
    let config = args.connection.sdk_config().await;
    let store = DynamoStore::new(publish_metrics::client(&config), &table);
    let total = events.len();
    let outcome = backfill(&store, &events, &Pacer::new(budget), &mut |o| {
        let done = o.counted + o.duplicates + o.bad.len() + o.failed.len();
        eprintln!(
            "{done}/{total}: counted {} | duplicates {} | bad {} | failed {}",
            o.counted,
            o.duplicates,
            o.bad.len(),
            o.failed.len()
        );
    })
    .await;
    let failures = outcome.bad.iter().map(|f| ("bad", f)).chain(outcome.failed.iter().map(|f| ("failed", f)));
    if args.json {
        let list: Vec<_> = failures
            .map(|(kind, f)| serde_json::json!({"record": f.message_id, "kind": kind, "reason": f.reason}))
            .collect();
        let doc = serde_json::json!({
            "table": table, "events": total, "counted": outcome.counted, "duplicates": outcome.duplicates,
            "wcu": outcome.wcu, "failures": list,
        });
        println!("{}", serde_json::to_string_pretty(&doc).context("cannot serialize the outcome")?);
    } else {
        for (kind, f) in failures {
            println!("{}: {kind}: {}", f.message_id, report::printable(&f.reason));
        }
        println!(
            "{total} events: {} counted, {} already counted, {} bad, {} failed ({} WCU) into {table}",
            outcome.counted,
            outcome.duplicates,
            outcome.bad.len(),
            outcome.failed.len(),
            outcome.wcu
        );
    }
    Ok(outcome.bad.is_empty() && outcome.failed.is_empty())
}
