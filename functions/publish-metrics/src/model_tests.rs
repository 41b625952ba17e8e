//! The model-based property on the strict in-memory table. `MODEL_CASES` sets the number of
//! cases (64 by default) and `MODEL_SEED` the seed (fixed by default, so CI is repeatable).

use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::fake::MemoryDynamo;
use crate::model::{check, redeliver_all, run, scenario, Faulty};
use crate::{DynamoStore, RetryPolicy};

fn runner() -> TestRunner {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let config = Config {
        cases: env("MODEL_CASES").unwrap_or(64) as u32,
        rng_seed: RngSeed::Fixed(env("MODEL_SEED").unwrap_or(0x5e71_e55b)),
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
}

#[test]
fn every_good_order_counted_exactly_once_and_only_bad_records_fail() {
    runner()
        .run(&scenario(40), |s| {
            // Paused time: backoff and latency cost nothing, and deadlines are exact.
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let store = Faulty::new(DynamoStore::new(
                    MemoryDynamo::with_latency("t", std::time::Duration::from_millis(400)),
                    "t",
                ));
                let retry = RetryPolicy::default();
                let result = run(&s, &store, retry).await;
                let counters = store.inner.client().counters();
                check(&s, &result, &counters).map_err(proptest::test_runner::TestCaseError::fail)?;
                // Retrying everything once more changes nothing that was counted.
                let again = redeliver_all(&s, &store).await;
                proptest::prop_assert_eq!(again.counted, 0);
                proptest::prop_assert!(again.failed.is_empty() && again.bad.is_empty());
                proptest::prop_assert_eq!(&store.inner.client().counters(), &counters);
                Ok(())
            })
        })
        .unwrap();
}

/// What a mutation breaks in the handler's traffic to the table.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    /// Dedupe records written without `attribute_not_exists`: an order counted again.
    DedupeConditionDropped,
    /// Every counter update applied twice.
    CountersTwice,
    /// The first writes fail, unknown to the harness (as a handler bug returning good records
    /// would look): they outlast an invocation's retries.
    FirstWritesFail,
}

/// The strict in-memory table behind a [`Mutation`].
struct Mutated {
    table: MemoryDynamo,
    mutation: Mutation,
    calls: std::sync::atomic::AtomicUsize,
}

impl crate::Dynamo for Mutated {
    async fn transact_write_items(
        &self,
        items: Vec<aws_sdk_dynamodb::types::TransactWriteItem>,
    ) -> Result<(), crate::TxError> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
        match self.mutation {
            Mutation::DedupeConditionDropped => {
                let unconditional = |p: &Put| {
                    let put = Put::builder().table_name(p.table_name()).set_item(Some(p.item().clone())).build();
                    TransactWriteItem::builder().put(put.expect("table and item given")).build()
                };
                let items = items.iter().map(|i| i.put().map_or_else(|| i.clone(), unconditional)).collect();
                self.table.transact_write_items(items).await
            }
            Mutation::CountersTwice => {
                self.table.transact_write_items(items.clone()).await?;
                let updates: Vec<_> = items.into_iter().filter(|i| i.update().is_some()).collect();
                self.table.transact_write_items(updates).await
            }
            Mutation::FirstWritesFail => {
                if self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 200 {
                    return Err(crate::TxError::Transient("InternalServerError (mutation)".into()));
                }
                self.table.transact_write_items(items).await
            }
        }
    }
}

/// How many of the seeded cases `check` refuses, with a message containing `expected`, when
/// the table is `mutated` and the queue moves messages to the DLQ after `max_receive_count`.
fn refusals(mutation: Option<Mutation>, max_receive_count: u32, expected: &str) -> usize {
    let fired = std::sync::atomic::AtomicUsize::new(0);
    runner()
        .run(&scenario(40), |s| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let table = MemoryDynamo::with_latency("t", std::time::Duration::from_millis(400));
                let verdict = match mutation {
                    None => {
                        let store = Faulty::new(DynamoStore::new(table, "t"));
                        let result =
                            crate::model::run_with_queue(&s, &store, RetryPolicy::default(), max_receive_count).await;
                        check(&s, &result, &store.inner.client().counters())
                    }
                    Some(mutation) => {
                        let calls = std::sync::atomic::AtomicUsize::new(0);
                        let store = Faulty::new(DynamoStore::new(Mutated { table, mutation, calls }, "t"));
                        let result =
                            crate::model::run_with_queue(&s, &store, RetryPolicy::default(), max_receive_count).await;
                        check(&s, &result, &store.inner.client().table.counters())
                    }
                };
                if verdict.is_err_and(|e| e.contains(expected)) {
                    fired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .unwrap();
    fired.into_inner()
}

/// Every check of the property can fail: each mutation makes `check` refuse some of the very
/// cases the property passes (a check that cannot fire proves nothing).
#[test]
fn each_check_fires_on_its_mutation() {
    use crate::model::MAX_RECEIVE_COUNT;
    // A queue that gives up after one receive sends good records to the DLQ on any fault.
    assert!(refusals(None, 1, "reached the DLQ after 1 receive") > 0, "lowered receive count");
    assert!(refusals(Some(Mutation::DedupeConditionDropped), MAX_RECEIVE_COUNT, "counters differ") > 0);
    assert!(refusals(Some(Mutation::CountersTwice), MAX_RECEIVE_COUNT, "counters differ") > 0);
    let unexplained = "failed in an invocation nothing went wrong in";
    assert!(refusals(Some(Mutation::FirstWritesFail), MAX_RECEIVE_COUNT, unexplained) > 0);
}
