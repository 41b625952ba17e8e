//! EventsLoadTest's logic against moto: PutEvents on a bus whose rule (the stack's pattern)
//! delivers to an SQS queue; every event sent arrives, with the drinks the report says.

use test_support as support;

use std::collections::{BTreeMap, HashSet};

use aws_sdk_eventbridge::types::Target;
use events_load_test::{run, EventBridgeBus, Input, RetryPolicy};
use order_events::{DetailType, OrderEvent, OrderKind};
use support::aws::workshop_stack;
use support::moto::Moto;

struct Env {
    _moto: Moto,
    events: aws_sdk_eventbridge::Client,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// A bus, the stack's rule and a queue, as the stack wires them.
async fn env() -> Env {
    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let stack = workshop_stack();
    let bus = stack.bus().name();
    let rule_name = stack.rule().physical_name().unwrap();
    events.create_event_bus().name(bus).send().await.expect("bus");
    let queue_name = stack.queue().physical_name().unwrap();
    let queue_url =
        sqs.create_queue().queue_name(queue_name).send().await.expect("queue").queue_url().unwrap().to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name(rule_name)
        .event_bus_name(bus)
        .event_pattern(stack.rule().pattern().to_json().unwrap().to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule(rule_name)
        .event_bus_name(bus)
        .targets(Target::builder().id("MetricsQueue").arn(queue_arn).build().unwrap())
        .send()
        .await
        .expect("target");
    Env { _moto: moto, events, sqs, queue_url }
}

/// Receives and deletes everything in the queue.
async fn drain(e: &Env) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let out = e.sqs.receive_message().queue_url(&e.queue_url).max_number_of_messages(10).send().await.unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(m.body().unwrap().to_owned());
            e.sqs
                .delete_message()
                .queue_url(&e.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(120)
}

#[tokio::test]
async fn every_event_sent_arrives_in_the_queue() {
    let e = env().await;
    let bus = EventBridgeBus::new(e.events.clone(), "Serverlesspresso");
    let report = run(&bus, &Input::default(), "run-1", RetryPolicy::default(), deadline()).await.unwrap();
    assert_eq!((report.sent, report.failed), (500, 0));
    assert_eq!(report.put_events_calls, 50);

    let bodies = drain(&e).await;
    assert_eq!(bodies.len(), 500);
    let mut per_drink: BTreeMap<String, u32> = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut orders = HashSet::new();
    for b in &bodies {
        let event = OrderEvent::from_body(b, chrono::Utc::now()).unwrap_or_else(|err| panic!("{err}: {b}"));
        assert!(ids.insert(event.id.clone()), "event ids are unique");
        assert!(orders.insert(event.dedupe.clone()), "each event is its own order: {:?}", event.dedupe);
        match event.kind {
            OrderKind::WaitingCompletion { drink } => *per_drink.entry(drink.to_string()).or_default() += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(per_drink, report.per_drink);
    assert_eq!(per_drink.keys().collect::<Vec<_>>(), ["Cappuccino", "Espresso", "Latte"]);
}

#[tokio::test]
async fn completed_and_cancelled_orders_are_routed_too() {
    let e = env().await;
    let bus = EventBridgeBus::new(e.events.clone(), "Serverlesspresso");
    for detail_type in [DetailType::OrderCompleted, DetailType::OrderCancelled] {
        let input = Input { count: Some(15), detail_type: Some(detail_type), ..Default::default() };
        let report = run(&bus, &input, "run-1", RetryPolicy::default(), deadline()).await.unwrap();
        assert_eq!(report.sent, 15);
    }
    let kinds: Vec<OrderKind> =
        drain(&e).await.iter().map(|b| OrderEvent::from_body(b, chrono::Utc::now()).unwrap().kind).collect();
    assert_eq!(kinds.len(), 30);
    assert_eq!(kinds.iter().filter(|k| **k == OrderKind::Completed).count(), 15);
    assert_eq!(kinds.iter().filter(|k| **k == OrderKind::Cancelled).count(), 15);
}

#[tokio::test]
async fn events_the_rule_does_not_match_stay_out_of_the_queue() {
    let e = env().await;
    e.events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name("Serverlesspresso")
                .source("awsserverlessda.serverlesspresso")
                .detail_type("OrderManager.OrderStarted")
                .detail("{}")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(drain(&e).await.is_empty());
}
