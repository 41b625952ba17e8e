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
                    MemoryDynamo::with_latency(std::time::Duration::from_millis(400)),
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
