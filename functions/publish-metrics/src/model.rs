//! A model-based check of "exactly once, nothing lost": random scenarios of orders, deliveries,
//! faults and deadlines, run through [`process`] under a faithful simulation of the SQS queue
//! (failed records come back, `maxReceiveCount` receives move a message to the dead-letter
//! queue, a lost delete redelivers a whole batch), and compared with a reference model.
//! The unit tests run it on the strict in-memory table; `tests/integration/publish_metrics_moto.rs` runs one
//! fixed scenario on moto with the real DynamoDB client.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use crate::{classify, process, Chunk, Invocation, Outcome, Pacer, RetryPolicy, Spacing, Store, TxError, WriteError};

/// Drink spellings producers send: the last two are one drink once normalized.
pub const DRINKS: [&str; 6] = ["Latte", "Cappuccino", "Espresso", "Flat White", "Caf\u{e9}", " Cafe\u{301} "];
/// The metric each of [`DRINKS`] must be counted under, written out by hand: the oracle does
/// not ask the code under test how it normalizes.
const DRINK_METRICS: [&str; 6] = ["Latte", "Cappuccino", "Espresso", "Flat White", "Caf\u{e9}", "Caf\u{e9}"];
/// Metric names producers may send as drinks: bad records.
pub const RESERVED: [&str; 3] = ["TotalSales", "completed", " CANCELLED"];
/// The stack's redrive policy.
pub use order_events::MAX_RECEIVE_COUNT;

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Waiting(usize),
    Completed,
    Cancelled,
}

/// One order of the pool.
#[derive(Clone, Debug)]
pub struct Order {
    pub kind: Kind,
    /// Without one, each publication is its own count (dedupe by event ID).
    pub has_order_id: bool,
    /// The table refuses its items (as DynamoDB refuses an item over its size limit).
    pub poison: bool,
    pub day: u32,
    /// Its re-publications carry another day, and another drink (a producer correcting an
    /// order, or a forger): the first one counted wins.
    pub changes: bool,
    /// It takes the order ID of the order before it: under another detail-type, another event
    /// of one order (placed, then completed), counted apart; under the same one, the same
    /// order published with other content, counted once.
    pub shares_id: bool,
}

/// A record no handler can count.
#[derive(Clone, Debug)]
pub enum Bad {
    NotJson,
    UnknownDetailType,
    NoDrink,
    Reserved(usize),
    FromTheFuture,
    /// Dated before the dedupe window (a redrive or an archive replay of an old event).
    TooOld,
    BadOrderId,
    HashInDrink,
}

/// One SQS message.
#[derive(Clone, Debug)]
pub enum Message {
    /// Publication `n` of an order (a producer re-publishing it gets a new event ID).
    Order {
        order: usize,
        publication: u8,
    },
    Bad(Bad),
}

/// A fault the table shows on one call.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Throttle,
    Internal,
    /// The write commits, but the client sees a timeout.
    CommitThenTimeout,
}

/// One invocation: how many messages it receives, what goes wrong.
#[derive(Clone, Debug)]
pub struct Step {
    pub size: usize,
    pub faults: Vec<Fault>,
    /// Time the invocation has left.
    pub time_left: Duration,
    /// The invocation crashes after writing: nothing is deleted, the whole batch comes back.
    pub lost_delete: bool,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    /// The write budget, thousandths of a WCU per second (`None`: unpaced).
    pub budget_milli: Option<u64>,
    pub orders: Vec<Order>,
    /// Messages in the order they enter the queue; an order may appear several times
    /// (EventBridge's at-least-once delivery, or re-publication).
    pub messages: Vec<Message>,
    pub steps: Vec<Step>,
}

pub fn scenario(max_orders: usize) -> impl Strategy<Value = Scenario> {
    let kind = prop_oneof![
        6 => (0..DRINKS.len()).prop_map(Kind::Waiting),
        2 => Just(Kind::Completed),
        1 => Just(Kind::Cancelled),
    ];
    let order = (
        kind,
        proptest::bool::weighted(0.8),
        proptest::bool::weighted(0.05),
        0u32..3,
        proptest::bool::weighted(0.2),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(kind, has_order_id, poison, day, changes, shares_id)| Order {
            kind,
            has_order_id,
            poison,
            day,
            changes,
            shares_id,
        });
    let bad = prop_oneof![
        Just(Bad::NotJson),
        Just(Bad::UnknownDetailType),
        Just(Bad::NoDrink),
        (0..RESERVED.len()).prop_map(Bad::Reserved),
        Just(Bad::FromTheFuture),
        Just(Bad::TooOld),
        Just(Bad::BadOrderId),
        Just(Bad::HashInDrink),
    ];
    let fault = prop_oneof![Just(Fault::Throttle), Just(Fault::Internal), Just(Fault::CommitThenTimeout)];
    let step = (
        1usize..=10,
        proptest::collection::vec(fault, 0..3),
        prop_oneof![3 => Just(30_000u64), 1 => 0u64..8_000],
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(size, faults, ms, lost_delete)| Step {
            size,
            faults,
            time_left: Duration::from_millis(ms),
            lost_delete,
        });
    // Paced at 5 WCU/s or more, so a full batch (at most 60 WCU) fits one invocation's time.
    let budget = proptest::option::weighted(0.5, 5_000u64..50_000);
    (proptest::collection::vec(order, 1..=max_orders), proptest::collection::vec(step, 1..40), budget)
        .prop_flat_map(move |(orders, steps, budget_milli)| {
            let n = orders.len();
            let delivery = prop_oneof![
                8 => (0..n, prop_oneof![4 => Just(0u8), 1 => 1u8..3]).prop_map(|(order, publication)| Message::Order { order, publication }),
                1 => bad.clone().prop_map(Message::Bad),
            ];
            // Every order delivered at least once, plus duplicates and bad records, shuffled.
            let every: Vec<Message> = (0..n).map(|order| Message::Order { order, publication: 0 }).collect();
            proptest::collection::vec(delivery, 0..=n)
                .prop_map(move |extra| every.iter().cloned().chain(extra).collect::<Vec<_>>())
                .prop_shuffle()
                .prop_map({
                    let (orders, steps) = (orders.clone(), steps.clone());
                    move |messages| Scenario { budget_milli, orders: orders.clone(), messages, steps: steps.clone() }
                })
        })
}

fn time(day: u32) -> String {
    format!("2024-05-{:02}T10:00:00Z", day + 1)
}

/// The handlers' clock in every run: a few days after the orders' days, well inside the
/// dedupe window, so only [`Bad::TooOld`] records are too old.
pub fn clock() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-06T00:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

impl Scenario {
    fn order_id(&self, order: usize) -> Option<String> {
        let o = &self.orders[order];
        if !o.has_order_id {
            return None;
        }
        if o.poison {
            return Some(format!("poison-{order}"));
        }
        // Follow `shares_id` back through good orders with IDs.
        let mut base = order;
        while base > 0 && self.orders[base].shares_id {
            let before = &self.orders[base - 1];
            if before.poison || !before.has_order_id {
                break;
            }
            base -= 1;
        }
        Some(format!("order-{base}"))
    }

    /// What publication `publication` of `order` says: its kind and day.
    fn content(&self, order: usize, publication: u8) -> (Kind, u32) {
        let o = &self.orders[order];
        if !o.changes || publication == 0 {
            return (o.kind.clone(), o.day);
        }
        let p = usize::from(publication);
        let kind = match o.kind {
            Kind::Waiting(d) => Kind::Waiting((d + p) % DRINKS.len()),
            ref other => other.clone(),
        };
        (kind, (o.day + u32::from(publication)) % 3)
    }

    /// The event ID of publication `publication` of `order`.
    fn event_id(&self, order: usize, publication: u8) -> String {
        // Poison orders without an order ID are refused by their event ID.
        if self.orders[order].poison {
            format!("poison-ev-{order}-{publication}")
        } else {
            format!("ev-{order}-{publication}")
        }
    }

    /// The dedupe key a good order message is counted under, in the model's own terms:
    /// (detail-type, order ID), or its event ID.
    fn dedupe_key(&self, i: usize) -> Option<ModelKey> {
        let Message::Order { order, publication } = self.messages[i] else { return None };
        if self.orders[order].poison {
            return None;
        }
        Some(match self.order_id(order) {
            Some(id) => (Some(detail_type(&self.orders[order].kind)), id),
            None => (None, self.event_id(order, publication)),
        })
    }

    /// The SQS body of message `i`.
    pub fn body(&self, i: usize, now: DateTime<Utc>) -> String {
        let envelope = |id: String, detail_type: &str, time: String, detail: serde_json::Value| {
            serde_json::json!({"version": "0", "id": id, "source": order_events::SOURCE, "detail-type": detail_type,
                "time": time, "region": "us-east-1", "resources": [], "detail": detail})
            .to_string()
        };
        match &self.messages[i] {
            Message::Order { order, publication } => {
                let mut detail = serde_json::json!({"userId": true, "drinkOrder": {"modifiers": null, "icon": 5}});
                if let Some(id) = self.order_id(*order) {
                    detail["orderId"] = id.into();
                }
                let (kind, day) = self.content(*order, *publication);
                if let Kind::Waiting(d) = kind {
                    detail["drinkOrder"]["drink"] = DRINKS[d].into();
                }
                envelope(self.event_id(*order, *publication), detail_type(&kind), time(day), detail)
            }
            Message::Bad(bad) => {
                let id = format!("bad-{i}");
                let waiting = |detail| envelope(id.clone(), "OrderManager.WaitingCompletion", time(0), detail);
                match bad {
                    Bad::NotJson => format!("{{not json {i}"),
                    Bad::UnknownDetailType => {
                        envelope(id.clone(), "OrderManager.Other", time(0), serde_json::json!({}))
                    }
                    Bad::NoDrink => waiting(serde_json::json!({"drinkOrder": {"drink": null}})),
                    Bad::Reserved(r) => waiting(serde_json::json!({"drinkOrder": {"drink": RESERVED[*r]}})),
                    Bad::FromTheFuture => envelope(
                        id.clone(),
                        "OrderManager.OrderCompleted",
                        (now + chrono::Duration::hours(2)).to_rfc3339(),
                        serde_json::json!({}),
                    ),
                    Bad::TooOld => envelope(
                        id.clone(),
                        "OrderManager.OrderCompleted",
                        (now - chrono::Duration::seconds(i64::from(order_events::window::MAX_EVENT_AGE_SECS) + 1))
                            .to_rfc3339(),
                        serde_json::json!({"orderId": format!("order-{i}")}),
                    ),
                    Bad::BadOrderId => waiting(serde_json::json!({"orderId": 1.5, "drinkOrder": {"drink": "Latte"}})),
                    Bad::HashInDrink => waiting(serde_json::json!({"drinkOrder": {"drink": "Lat#te"}})),
                }
            }
        }
    }

    fn is_good(&self, i: usize) -> bool {
        matches!(self.messages[i], Message::Order { order, .. } if !self.orders[order].poison)
    }

    /// How many counts the run must make: one per dedupe key among the good messages.
    pub fn expected_counts(&self) -> usize {
        (0..self.messages.len()).filter_map(|i| self.dedupe_key(i)).collect::<BTreeSet<_>>().len()
    }

    /// What the table must hold: for each dedupe key among the good messages, the metrics of
    /// the one publication counted under it (`counted`: the event IDs whose writes committed,
    /// first per key; the first counted wins), in the model's own terms. `Err` when a key of a
    /// good message was never counted, or a counted event is not one of the scenario's good
    /// messages under that key.
    pub fn expected_counters(&self, counted: &BTreeMap<String, String>) -> Result<BTreeMap<String, i128>, String> {
        let mut publications: BTreeMap<String, (usize, u8, ModelKey)> = BTreeMap::new();
        for (i, m) in self.messages.iter().enumerate() {
            if let (Message::Order { order, publication }, Some(key)) = (m, self.dedupe_key(i)) {
                publications.insert(self.event_id(*order, *publication), (*order, *publication, key));
            }
        }
        let keys: BTreeSet<_> = publications.values().map(|(_, _, k)| k.clone()).collect();
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for event_id in counted.values() {
            let Some((order, publication, key)) = publications.get(event_id) else {
                return Err(format!("counted event {event_id} is not a good message of the scenario"));
            };
            if !seen.insert(key.clone()) {
                return Err(format!("{key:?} counted twice (again by {event_id})"));
            }
            let (kind, day) = self.content(*order, *publication);
            let day = format!("2024-05-{:02}", day + 1);
            let mut add = |metric: &str| *out.entry(format!("{day}#{metric}")).or_insert(0) += 1;
            match kind {
                Kind::Waiting(d) => {
                    add("TotalSales");
                    add(DRINK_METRICS[d]);
                }
                Kind::Completed => add("Completed"),
                Kind::Cancelled => add("Cancelled"),
            }
        }
        if let Some(missing) = keys.difference(&seen).next() {
            return Err(format!("{missing:?} was never counted"));
        }
        Ok(out)
    }
}

/// A dedupe key in the model's terms: (detail-type, order ID), or (none, event ID).
type ModelKey = (Option<&'static str>, String);

fn detail_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Waiting(_) => "OrderManager.WaitingCompletion",
        Kind::Completed => "OrderManager.OrderCompleted",
        Kind::Cancelled => "OrderManager.OrderCancelled",
    }
}

/// `fault` as the SDK reports it: a service error with DynamoDB's exception, or a timeout.
fn injected(
    fault: Fault,
) -> aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError> {
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
    use aws_sdk_dynamodb::types::error::{InternalServerError, ProvisionedThroughputExceededException};
    let raw = |status: u16| {
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(status).expect("an HTTP status");
        aws_smithy_runtime_api::http::Response::new(status, aws_smithy_types::body::SdkBody::empty())
    };
    match fault {
        Fault::Throttle => SdkError::service_error(
            E::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder().message("(injected)").build(),
            ),
            raw(400),
        ),
        Fault::Internal => SdkError::service_error(
            E::InternalServerError(InternalServerError::builder().message("(injected)").build()),
            raw(500),
        ),
        Fault::CommitThenTimeout => SdkError::timeout_error("timeout after the write committed (injected)"),
    }
}

/// The table as the scenario sees it: faults for the current step, poison orders refused.
/// It also holds the invocation's deadline, and fails the property when a write starts too
/// late to end before it.
pub struct Faulty<S> {
    pub inner: S,
    faults: Mutex<VecDeque<Fault>>,
    deadline: Mutex<Option<tokio::time::Instant>>,
    /// Messages whose write committed but answered with a timeout, in this invocation.
    committed_unanswered: Mutex<Vec<String>>,
    /// Every committed write's events: dedupe partition key -> the first event ID committed
    /// under it (what a dedupe record's `eventId` says).
    committed: Mutex<BTreeMap<String, String>>,
}

impl<S> Faulty<S> {
    pub fn new(inner: S) -> Self {
        Faulty {
            inner,
            faults: Mutex::new(VecDeque::new()),
            deadline: Mutex::new(None),
            committed_unanswered: Mutex::new(Vec::new()),
            committed: Mutex::new(BTreeMap::new()),
        }
    }

    fn record_commit(&self, chunk: &Chunk) {
        let mut committed = self.committed.lock().expect("not poisoned");
        for p in &chunk.events {
            committed.entry(p.event.dedupe.partition_key()).or_insert_with(|| p.event.id.clone());
        }
    }

    /// The events counted so far: dedupe partition key -> the first event ID committed.
    pub fn counted(&self) -> BTreeMap<String, String> {
        self.committed.lock().expect("not poisoned").clone()
    }

    /// Messages whose write committed but answered with a timeout since the last call.
    fn take_committed_unanswered(&self) -> Vec<String> {
        std::mem::take(&mut *self.committed_unanswered.lock().expect("not poisoned"))
    }
}

impl<S: Store + Sync> Store for Faulty<S> {
    async fn write(&self, chunk: &Chunk) -> Result<u64, WriteError> {
        if let Some(deadline) = *self.deadline.lock().expect("not poisoned") {
            let latest = deadline.checked_sub(crate::ATTEMPT_TIMEOUT + crate::ANSWER_MARGIN);
            assert!(
                latest.is_some_and(|latest| tokio::time::Instant::now() <= latest),
                "a write started too late to end before the invocation's deadline"
            );
        }
        if let Some(i) = chunk.events.iter().position(|p| p.event.dedupe.partition_key().contains("poison")) {
            let mut reasons = vec!["None".to_owned(); chunk.items()];
            reasons[i] = "ValidationError".to_owned();
            return Err(classify(
                chunk,
                TxError::Cancelled { reasons, counted_by: vec![], message: "Item size has exceeded".into() },
            ));
        }
        let fault = self.faults.lock().expect("not poisoned").pop_front();
        match fault {
            Some(Fault::CommitThenTimeout) => {
                self.inner.write(chunk).await?;
                self.record_commit(chunk);
                let ids = chunk.events.iter().map(|p| p.message_id.clone());
                self.committed_unanswered.lock().expect("not poisoned").extend(ids);
                Err(classify(chunk, crate::store::tx_error(injected(Fault::CommitThenTimeout))))
            }
            // As the SDK answers, read by the handler's own mapping.
            Some(fault) => Err(classify(chunk, crate::store::tx_error(injected(fault)))),
            None => {
                let wcu = self.inner.write(chunk).await?;
                self.record_commit(chunk);
                Ok(wcu)
            }
        }
    }

    fn cost(&self, chunk: &Chunk) -> u64 {
        self.inner.cost(chunk)
    }
}

/// What a run saw.
#[derive(Debug, Default)]
pub struct Run {
    pub invocations: usize,
    /// Messages in the dead-letter queue at the end, by index.
    pub dead_letters: BTreeSet<usize>,
    /// Good messages that reached the dead-letter queue before the redrive, with the receives
    /// they had then.
    pub dead_lettered_good: BTreeMap<usize, u32>,
    /// Good messages returned by an invocation nothing went wrong in.
    pub failed_clean: BTreeSet<usize>,
    /// Messages reported bad at least once.
    pub reported_bad: BTreeSet<usize>,
    /// The invocations' `CountedRecords`, summed.
    pub counted: usize,
    /// The events whose writes committed: dedupe partition key -> the first event ID.
    pub counted_events: BTreeMap<String, String>,
    /// Counts no invocation could report: a write committed but answered with a timeout, and
    /// the invocation had no time left to retry it (it returns the records as failed; the next
    /// delivery finds them counted before).
    pub unreported: usize,
}

/// Runs `scenario` against `store` until the queue is empty: its steps first, then clean
/// invocations; then redrives good messages from the dead-letter queue (as a person would after
/// the alarm) until only records that can never be counted are left there.
pub async fn run<S: Store + Sync>(scenario: &Scenario, store: &Faulty<S>, retry: RetryPolicy) -> Run {
    run_with_queue(scenario, store, retry, MAX_RECEIVE_COUNT).await
}

/// [`run`] through a queue that moves a message to the DLQ after `max_receive_count` receives
/// (the stack's is [`MAX_RECEIVE_COUNT`]; the mutation tests lower it).
pub async fn run_with_queue<S: Store + Sync>(
    scenario: &Scenario,
    store: &Faulty<S>,
    retry: RetryPolicy,
    max_receive_count: u32,
) -> Run {
    let now = clock();
    // One execution environment for the whole run: its bucket carries over between invocations.
    let pacer = match scenario.budget_milli.and_then(order_events::capacity::WriteBudget::per_second_milli) {
        Some(budget) => Pacer::new(budget),
        None => Pacer::unpaced(),
    };
    let mut queue: VecDeque<usize> = (0..scenario.messages.len()).collect();
    let mut receives: HashMap<usize, u32> = HashMap::new();
    let mut out = Run::default();
    let clean = Step { size: 10, faults: vec![], time_left: Duration::from_secs(30), lost_delete: false };
    let mut steps = scenario.steps.iter();
    let mut guard = 0;
    loop {
        if queue.is_empty() {
            // Redrive: good messages go back; what is left must never be countable.
            let good: Vec<usize> = out.dead_letters.iter().copied().filter(|i| scenario.is_good(*i)).collect();
            if good.is_empty() {
                break;
            }
            for i in good {
                out.dead_letters.remove(&i);
                receives.insert(i, 0);
                queue.push_back(i);
            }
        }
        guard += 1;
        assert!(guard < 10_000, "the queue never drains");
        let step = steps.next().unwrap_or(&clean);
        // Whether anything is injected into this invocation that may return a good record.
        let faulty = !step.faults.is_empty() || step.lost_delete || step.time_left < clean.time_left;
        let batch: Vec<usize> = (0..step.size).map_while(|_| queue.pop_front()).collect();
        for i in &batch {
            *receives.entry(*i).or_insert(0) += 1;
        }
        store.faults.lock().expect("not poisoned").extend(step.faults.iter().copied());
        let mut event = SqsEvent::default();
        for i in &batch {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("msg-{i}"));
            m.body = Some(scenario.body(*i, now));
            event.records.push(m);
        }
        let invocation = Invocation::with_time_left(step.time_left).judged_at(now);
        *store.deadline.lock().expect("not poisoned") = Some(invocation.deadline);
        let outcome: Outcome = process(store, event, Spacing { retry, pacer: &pacer }, invocation).await;
        store.faults.lock().expect("not poisoned").clear();
        let returned: BTreeSet<String> = outcome.failed.iter().map(|f| f.message_id.clone()).collect();
        out.unreported += store.take_committed_unanswered().iter().filter(|m| returned.contains(*m)).count();
        out.invocations += 1;
        out.counted += outcome.counted;
        let index = |id: &str| id.trim_start_matches("msg-").parse::<usize>().expect("our message id");
        for f in &outcome.bad {
            let i = index(&f.message_id);
            assert!(!scenario.is_good(i), "a good record was reported bad: {:?}: {}", scenario.messages[i], f.reason);
            out.reported_bad.insert(i);
        }
        for f in &outcome.failed {
            assert!(
                !matches!(scenario.messages[index(&f.message_id)], Message::Bad(_)),
                "a bad record was reported as a write failure: {}",
                f.reason
            );
        }
        let failed: BTreeSet<usize> =
            outcome.response().batch_item_failures.iter().map(|f| index(&f.item_identifier)).collect();
        for i in batch {
            if failed.contains(&i) && !faulty && scenario.is_good(i) {
                out.failed_clean.insert(i);
            }
            if step.lost_delete || failed.contains(&i) {
                // Back after the visibility timeout, or to the DLQ after maxReceiveCount receives.
                if receives[&i] >= max_receive_count {
                    if scenario.is_good(i) {
                        out.dead_lettered_good.insert(i, receives[&i]);
                    }
                    out.dead_letters.insert(i);
                } else {
                    queue.push_back(i);
                }
            }
        }
    }
    out.counted_events = store.counted();
    out
}

/// The properties every run must have; `counters` is what the table holds at the end.
pub fn check(scenario: &Scenario, run: &Run, counters: &BTreeMap<String, i128>) -> Result<(), String> {
    let expected = scenario.expected_counters(&run.counted_events)?;
    if *counters != expected {
        return Err(format!("counters differ\n table: {counters:?}\n model: {expected:?}"));
    }
    // The invocations' metrics: every count reported once, except those whose commit no
    // invocation could see (a timeout with no time left to retry it).
    let counts = scenario.expected_counts();
    if run.counted + run.unreported != counts {
        return Err(format!(
            "the invocations reported {} counted and {} unreported for {counts} counts",
            run.counted, run.unreported
        ));
    }
    // A good record is returned only when something went wrong, and it reaches the DLQ only
    // after the receives the stack's redrive policy allows (then a person redrives it).
    if let Some(i) = run.failed_clean.first() {
        return Err(format!(
            "good record {i} ({:?}) failed in an invocation nothing went wrong in",
            scenario.messages[*i]
        ));
    }
    for (i, receives) in &run.dead_lettered_good {
        if *receives < MAX_RECEIVE_COUNT {
            return Err(format!(
                "good record {i} ({:?}) reached the DLQ after {receives} receive(s); the queue allows {MAX_RECEIVE_COUNT}",
                scenario.messages[*i]
            ));
        }
    }
    for (i, m) in scenario.messages.iter().enumerate() {
        match m {
            Message::Bad(_) => {
                if !run.dead_letters.contains(&i) || !run.reported_bad.contains(&i) {
                    return Err(format!("bad record {i} ({m:?}) did not fail into the DLQ"));
                }
            }
            Message::Order { .. } if scenario.is_good(i) => {
                if run.dead_letters.contains(&i) {
                    return Err(format!("good record {i} ({m:?}) is in the DLQ"));
                }
            }
            Message::Order { .. } => {}
        }
    }
    // Every poison order reaches the DLQ, through at least one delivery of its dedupe key.
    let poison_key = |i: usize| match scenario.messages[i] {
        Message::Order { order, publication } if scenario.orders[order].poison => {
            Some((order, if scenario.orders[order].has_order_id { 0 } else { publication }))
        }
        _ => None,
    };
    let in_dlq: BTreeSet<_> = run.dead_letters.iter().filter_map(|i| poison_key(*i)).collect();
    for key in (0..scenario.messages.len()).filter_map(poison_key) {
        if !in_dlq.contains(&key) {
            return Err(format!("poison order {key:?} never reached the DLQ"));
        }
    }
    Ok(())
}

/// Delivers every good message once more, with no faults: nothing may change.
pub async fn redeliver_all<S: Store + Sync>(scenario: &Scenario, store: &Faulty<S>) -> Outcome {
    let now = clock();
    let pacer = Pacer::unpaced();
    let mut total = Outcome::default();
    let good: Vec<usize> = (0..scenario.messages.len()).filter(|i| scenario.is_good(*i)).collect();
    for batch in good.chunks(10) {
        let mut event = SqsEvent::default();
        for i in batch {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("msg-{i}"));
            m.body = Some(scenario.body(*i, now));
            event.records.push(m);
        }
        let invocation = Invocation::with_time_left(Duration::from_secs(30)).judged_at(now);
        *store.deadline.lock().expect("not poisoned") = Some(invocation.deadline);
        let o = process(store, event, Spacing { retry: RetryPolicy::default(), pacer: &pacer }, invocation).await;
        total.counted += o.counted;
        total.duplicates += o.duplicates;
        total.failed.extend(o.failed);
        total.bad.extend(o.bad);
    }
    total
}
