//! Counting old orders on purpose: events older than the dedupe window are bad records for
//! PublishMetrics (their dedupe records may have expired, so a redelivery could count them
//! twice). A backfill counts such events deliberately, through the same exactly-once path,
//! with a fresh window: each counted order gets a dedupe record that lives the full TTL from now.
//!
//! What it cannot know: whether an order was counted before its record expired. Backfill only
//! events that never were (the DLQ's too-old records, an export of a period the function missed).

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};

use crate::{process, Invocation, Outcome, Pacer, RetryPolicy, Spacing, Store};

/// Records per [`process`] call: the handler's batches are at most 10; more per call only
/// means fewer, larger transactions (at most 100 items each).
const RECORDS_PER_CALL: usize = 100;

/// Counts `events` (EventBridge events as JSON, one per entry), whatever their age, paced by
/// `pacer`. Each record is named `line-<n>` (from 1) in the outcome's failures. `progress` is
/// called after each call with the outcome so far.
pub async fn backfill<S: Store>(
    store: &S,
    events: &[String],
    pacer: &Pacer,
    progress: &mut (dyn FnMut(&Outcome) + Send),
) -> Outcome {
    let mut total = Outcome::default();
    // One ID for the whole backfill, unique to it (`countedBy` tells its own retried writes).
    let id = Invocation::backfill(Duration::ZERO).id;
    for (n, part) in events.chunks(RECORDS_PER_CALL).enumerate() {
        let mut event = SqsEvent::default();
        for (i, body) in part.iter().enumerate() {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("line-{}", n * RECORDS_PER_CALL + i + 1));
            m.body = Some(body.clone());
            event.records.push(m);
        }
        // No Lambda deadline: each call gets an hour, ample for 100 records at any budget
        // the stack accepts.
        let invocation = Invocation { id: id.clone(), ..Invocation::backfill(Duration::from_secs(3600)) };
        let outcome = process(store, event, Spacing { retry: RetryPolicy::default(), pacer }, invocation).await;
        total.absorb(outcome);
        progress(&total);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::events::{state, waiting};
    use crate::fake::MemoryDynamo;
    use crate::DynamoStore;

    #[tokio::test(start_paused = true)]
    async fn old_orders_are_counted_once_with_a_fresh_window() {
        let store = DynamoStore::new(MemoryDynamo::new("t"), "t");
        let old = "2020-01-01T10:00:00Z";
        let events = vec![
            waiting("a", "Latte", old),
            waiting("a", "Latte", old),
            state("b", "OrderManager.OrderCancelled", old),
            "not json".to_owned(),
        ];
        let mut calls = 0;
        let out = backfill(&store, &events, &Pacer::unpaced(), &mut |_| calls += 1).await;
        assert_eq!((out.counted, out.duplicates, calls), (2, 1, 1));
        assert_eq!(out.bad.len(), 1);
        assert_eq!(out.bad[0].message_id, "line-4");
        let counters = store.client().counters();
        assert_eq!(counters["2020-01-01#TotalSales"], 1);
        assert_eq!(counters["2020-01-01#Cancelled"], 1);
        let records = store.client().dedupe_records();
        let by = records["Dedupe#Order#OrderManager.WaitingCompletion#a"][order_events::provenance::COUNTED_BY]
            .as_s()
            .unwrap()
            .clone();
        assert!(by.starts_with("backfill-"), "{by}");
        // Backfilled again: every order is a duplicate.
        let again = backfill(&store, &events[..3], &Pacer::unpaced(), &mut |_| ()).await;
        assert_eq!((again.counted, again.duplicates), (0, 3));
        // The same events through PublishMetrics are too old.
        let live = process(
            &store,
            crate::fake::events::batch(&events[..1]),
            Spacing { retry: RetryPolicy::default(), pacer: &Pacer::unpaced() },
            Invocation::with_time_left(Duration::from_secs(30)),
        )
        .await;
        assert!(live.bad[0].reason.contains("older than the dedupe window"), "{live:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn many_events_go_in_calls_of_a_hundred() {
        let store = DynamoStore::new(MemoryDynamo::new("t"), "t");
        let events: Vec<String> =
            (0..250).map(|i| waiting(&format!("o{i}"), "Espresso", "2021-03-04T05:06:07Z")).collect();
        let mut seen = Vec::new();
        let out = backfill(&store, &events, &Pacer::unpaced(), &mut |o| seen.push(o.counted)).await;
        assert_eq!(out.counted, 250);
        assert_eq!(seen, [100, 200, 250]);
        assert_eq!(store.client().counters()["2021-03-04#Espresso"], 250);
    }
}
