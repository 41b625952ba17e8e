//! Per-invocation counts as CloudWatch metrics: one Embedded Metric Format document per
//! invocation, written as its own line to standard output, from which CloudWatch Logs extracts
//! the metrics (no `cloudwatch:PutMetricData` call, no extra permission). The stack alarms on
//! `BadRecords` and `FailedRecords`, so a person hears of records that were not counted before
//! anything reaches the dead-letter queue.

use order_events::emf::{
    BAD, COUNTED, DIMENSION, DUPLICATES, FAILED, NAMESPACE, PACING_WAIT_MS, THROTTLED_WRITES, TRANSACTIONS,
    TRANSACTION_ITEMS, WRITE_CAPACITY_UNITS,
};
use serde_json::json;

use crate::Outcome;

/// The EMF document for `outcome`, as one line of JSON.
pub fn document(outcome: &Outcome, function_name: &str, timestamp_ms: u64) -> String {
    let metric = |name: &str| json!({"Name": name, "Unit": "Count"});
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [metric(COUNTED), metric(DUPLICATES), metric(BAD), metric(FAILED)],
            }],
        },
        DIMENSION: function_name,
        COUNTED: outcome.counted,
        DUPLICATES: outcome.duplicates,
        BAD: outcome.bad.len(),
        FAILED: outcome.failed.len(),
        TRANSACTIONS: outcome.transactions.len(),
        TRANSACTION_ITEMS: outcome.transactions.iter().sum::<usize>(),
        WRITE_CAPACITY_UNITS: outcome.wcu,
        THROTTLED_WRITES: outcome.throttled,
        PACING_WAIT_MS: outcome.paced.as_millis() as u64,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Failure;

    #[test]
    fn one_line_with_every_count_under_its_declared_metric() {
        let outcome = Outcome {
            counted: 7,
            duplicates: 2,
            bad: vec![Failure { message_id: "m1".into(), reason: "not JSON".into() }],
            failed: vec![
                Failure { message_id: "m2".into(), reason: "throttled".into() },
                Failure { message_id: "m3".into(), reason: "throttled".into() },
            ],
            transactions: vec![12],
            wcu: 24,
            throttled: 3,
            paced: std::time::Duration::from_millis(5600),
        };
        let line = document(&outcome, "PublishMetrics", 1_714_557_600_000);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_714_557_600_000u64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([[DIMENSION]]));
        assert_eq!(v[DIMENSION], "PublishMetrics");
        // Every declared metric has a number member of the same name (the EMF specification).
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(names, [COUNTED, DUPLICATES, BAD, FAILED]);
        let values: Vec<u64> = names.iter().map(|n| v[*n].as_u64().unwrap()).collect();
        assert_eq!(values, [7, 2, 1, 2]);
        // Logged, not published as metrics.
        assert_eq!(
            (v[TRANSACTIONS].as_u64(), v[TRANSACTION_ITEMS].as_u64(), v[WRITE_CAPACITY_UNITS].as_u64()),
            (Some(1), Some(12), Some(24))
        );
        assert_eq!((v[THROTTLED_WRITES].as_u64(), v[PACING_WAIT_MS].as_u64()), (Some(3), Some(5600)));
    }
}
