use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn body(detail_type: &str, time: &str, detail: serde_json::Value) -> String {
    json!({
        "version": "0", "id": "e1", "source": SOURCE, "detail-type": detail_type,
        "account": "123456789012", "time": time, "region": "us-east-1", "resources": [], "detail": detail,
    })
    .to_string()
}

fn waiting(detail: serde_json::Value) -> Result<OrderEvent, BadEvent> {
    OrderEvent::from_body(&body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", detail), now())
}

fn drink_of(e: &OrderEvent) -> &str {
    match &e.kind {
        OrderKind::WaitingCompletion { drink } => drink.as_str(),
        other => panic!("not a sale: {other:?}"),
    }
}

#[test]
fn day_comes_from_the_event_time_in_utc() {
    let parse = |time| OrderEvent::from_body(&body("OrderManager.OrderCompleted", time, json!({})), now()).unwrap();
    assert_eq!(parse("2024-04-30T23:59:59+00:00").day.to_string(), "2024-04-30");
    assert_eq!(parse("2024-04-30T23:30:00-02:00").day.to_string(), "2024-05-01");
}

#[test]
fn an_event_more_than_an_hour_ahead_is_bad() {
    let at = |time: &str| OrderEvent::from_body(&body("OrderManager.OrderCompleted", time, json!({})), now());
    assert!(at("2024-05-01T13:00:00Z").is_ok(), "exactly one hour ahead is clock skew");
    let err = at("2024-05-01T13:00:01Z").unwrap_err();
    assert!(matches!(err, BadEvent::FromTheFuture { .. }), "{err}");
    assert!(err.to_string().contains("ahead of the clock"), "{err}");
    assert!(at("2024-04-20T00:00:00Z").is_ok(), "late events count on their own day");
}

#[test]
fn an_event_older_than_the_dedupe_window_is_bad_unless_backfilled() {
    let at = |time: &str, age| {
        OrderEvent::read_body(&body("OrderManager.OrderCompleted", time, json!({"orderId": "o1"})), now(), age)
    };
    // now() is 2024-05-01T12:00:00Z; the window is 16 days.
    assert!(at("2024-04-15T12:00:00Z", Age::Bounded).is_ok(), "exactly the window's age still counts");
    let err = at("2024-04-15T11:59:59Z", Age::Bounded).unwrap_err();
    assert!(matches!(err, BadEvent::TooOld { .. }), "{err}");
    assert!(err.to_string().contains("older than the dedupe window"), "{err}");
    // An archive replay keeps the event's time and adds `replay-name`: still too old.
    let replay = json!({"id": "e1", "source": SOURCE, "detail-type": "OrderManager.OrderCompleted",
        "time": "2024-01-01T00:00:00Z", "replay-name": "r", "detail": {}});
    assert!(matches!(OrderEvent::from_value(&replay, now()), Err(BadEvent::TooOld { .. })));
    let year_one = at("0001-01-01T00:00:00Z", Age::Bounded);
    assert!(matches!(year_one, Err(BadEvent::TooOld { .. })), "{year_one:?}");
    let old = at("1970-01-01T00:00:00Z", Age::Backfill).unwrap();
    assert_eq!(old.day.to_string(), "1970-01-01", "a backfill counts old orders on their own day");
    assert!(matches!(at("2024-05-01T13:00:01Z", Age::Backfill), Err(BadEvent::FromTheFuture { .. })));
}

#[test]
fn dedupe_keys_read_back_exactly() {
    let keys = [
        DedupeKey::Order { detail_type: DetailType::OrderCancelled, order_id: "a#b".into() },
        DedupeKey::Order { detail_type: DetailType::WaitingCompletion, order_id: "1000".into() },
        DedupeKey::Event("7f1c-e".into()),
    ];
    for k in keys {
        assert_eq!(DedupeKey::read(&k.partition_key()), Some(k));
    }
    for bad in [
        "Aggregate",
        "Dedupe#Order#Nope#1",
        "Dedupe#Order#OrderManager.OrderCompleted",
        "Dedupe#",
        "Dedupe#Order#OrderManager.OrderCompleted#",
    ] {
        assert_eq!(DedupeKey::read(bad), None, "{bad}");
    }
}

#[test]
fn keys_follow_the_workshop_layout() {
    let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    let time = day.and_hms_opt(10, 0, 0).unwrap().and_utc();
    let event = |kind| OrderEvent { id: "x".into(), dedupe: DedupeKey::Event("x".into()), time, day, kind };
    let e = event(OrderKind::WaitingCompletion { drink: Drink::parse("Flat White").unwrap() });
    let sks: Vec<String> = e.metric_keys().iter().map(MetricKey::sort_key).collect();
    assert_eq!(sks, ["2024-05-01#TotalSales", "2024-05-01#Flat White"]);
    let c = event(OrderKind::Completed);
    assert_eq!(c.metric_keys()[0].sort_key(), "2024-05-01#Completed");
    let x = event(OrderKind::Cancelled);
    assert_eq!(x.metric_keys()[0].sort_key(), "2024-05-01#Cancelled");
    for k in e.metric_keys().into_iter().chain(c.metric_keys()).chain(x.metric_keys()) {
        assert_eq!(MetricKey::parse_sort_key(&k.sort_key()), Some(k));
    }
    assert_eq!(MetricKey::parse_sort_key("2024-05-01#"), None);
    assert_eq!(MetricKey::parse_sort_key("nope"), None);
    assert_eq!(MetricKey::parse_sort_key("2024-13-01#Latte"), None);
}

#[test]
fn drink_names_are_normalized() {
    assert_eq!(Drink::parse("  Latte\t").unwrap().as_str(), "Latte");
    // "Café" decomposed (e + combining acute) and composed are one drink.
    assert_eq!(Drink::parse("Cafe\u{301}").unwrap(), Drink::parse("Caf\u{e9}").unwrap());
    assert_eq!(Drink::parse("Cafe\u{301}").unwrap().as_str(), "Caf\u{e9}");
}

#[test]
fn drink_name_limits() {
    assert_eq!(Drink::parse("x").unwrap().as_str(), "x");
    assert_eq!(Drink::parse(&"é".repeat(100)).unwrap().as_str().chars().count(), 100);
    assert!(matches!(Drink::parse(&"é".repeat(101)), Err(BadDrink::TooLong(_))));
    // 100 characters once normalized: 100 decomposed é are 200 code points before NFC.
    assert!(Drink::parse(&"e\u{301}".repeat(100)).is_ok());
    assert_eq!(Drink::parse(""), Err(BadDrink::Empty));
    assert_eq!(Drink::parse("   "), Err(BadDrink::Empty));
    assert!(matches!(Drink::parse("a#b"), Err(BadDrink::Hash(_))));
    assert!(matches!(Drink::parse("Lat\u{7}te"), Err(BadDrink::Control(_))));
    assert!(matches!(Drink::parse("Lat\u{1b}[31mte"), Err(BadDrink::Control(_))));
    assert!(matches!(Drink::parse("Latte\u{85}x"), Err(BadDrink::Control(_))));
}

#[test]
fn metric_names_are_reserved_in_any_case() {
    for name in ["TotalSales", "totalsales", "TOTALSALES", " Completed ", "cancelled", "CANCELLED"] {
        let err = Drink::parse(name).unwrap_err();
        assert!(matches!(err, BadDrink::Reserved(..)), "{name}: {err}");
        assert!(err.to_string().contains("reserved"), "{err}");
    }
    // Near misses are ordinary drinks.
    for name in ["Total Sales", "TotalSales2", "Complete", "Canceled"] {
        assert!(Drink::parse(name).is_ok(), "{name}");
    }
    let err = waiting(json!({"drinkOrder": {"drink": "TotalSales"}})).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[test]
fn report_columns_are_reserved_too_and_look_alikes_of_reserved_names() {
    // A drink named `total` or `day` would give the CSV a second column of that name.
    for name in ["total", "Total", "DAY", "day", "drinks", "completed", "t\u{43e}tal", "TOTA\u{217c}"] {
        let err = Drink::parse(name).unwrap_err();
        assert!(matches!(err, BadDrink::Reserved(..)), "{name}: {err}");
    }
    for name in ["Totally", "Day Roast", "Daily", "Drink"] {
        assert!(Drink::parse(name).is_ok(), "{name}");
    }
    assert_eq!(crate::reserved_names().count(), 8, "3 metrics x (name, column), day, drinks");
}

#[test]
fn invisible_characters_and_noncharacters_are_refused() {
    for (name, code) in [
        ("Caf\u{200b}\u{e9}", 0x200B),
        ("Latte\u{200d}", 0x200D),
        ("Lat\u{ad}te", 0x00AD),
        ("\u{202e}ettaL", 0x202E),
        ("Latte\u{fe0f}", 0xFE0F),
        ("Latte\u{ffff}", 0xFFFF),
        ("Latte\u{fdd0}", 0xFDD0),
        ("Latte\u{1fffe}", 0x1FFFE),
        ("Latte\u{e0041}", 0xE0041),
    ] {
        assert_eq!(Drink::parse(name), Err(BadDrink::Invisible(name.trim().to_owned(), code)), "{name:?}");
    }
    // Visible neighbours pass: a no-break space, an accent, an emoji without a selector.
    for name in ["Caf\u{e9}\u{a0}Latte", "Cafe\u{301}", "Latte \u{2615}", "\u{fdcf}", "\u{fdf0}"] {
        assert!(Drink::parse(name).is_ok(), "{name:?}");
    }
}

#[test]
fn look_alikes_of_menu_drinks_and_disguised_ascii_are_refused() {
    // Cyrillic a in Latte; a capital I for the l of Flat White; Greek omicron in Espresso.
    for (name, looks_like) in [("L\u{430}tte", "Latte"), ("FIat White", "Flat White"), ("Espress\u{3bf}", "Espresso")] {
        assert_eq!(Drink::parse(name), Err(BadDrink::LookAlike(name.to_owned(), looks_like.to_owned())), "{name}");
    }
    // Latin and Cyrillic mixed, reading as a plain ASCII name that is not on the menu.
    assert!(matches!(Drink::parse("Mo\u{441}ha"), Err(BadDrink::LookAlike(..))));
    // Real names in one script, or mixing scripts visibly, pass.
    for name in [
        "Latte",
        "\u{41b}\u{430}\u{442}\u{442}\u{435}",
        "Matcha \u{62b9}\u{8336} Latte",
        "Iced Latte",
        "latte",
        "Caf\u{e9}",
    ] {
        assert!(Drink::parse(name).is_ok(), "{name:?}");
    }
}

#[test]
fn only_what_is_counted_is_read() {
    // Fields never counted may be absent or of any type.
    for detail in [
        json!({"drinkOrder": {"drink": "Latte", "modifiers": null, "icon": 5, "userId": true}}),
        json!({"drinkOrder": {"drink": "Latte", "modifiers": "oat"}, "userId": {"x": 1}, "Message": 7}),
        json!({"drinkOrder": {"drink": "Latte"}}),
    ] {
        let e = waiting(detail.clone()).unwrap_or_else(|err| panic!("{detail}: {err}"));
        assert_eq!(drink_of(&e), "Latte");
    }
    // Completed and cancelled need nothing from the detail: a string, null or no detail at all.
    for detail in [json!("{\"orderId\": 1}"), json!(null), json!({"drinkOrder": "text"}), json!([1, 2])] {
        let e = OrderEvent::from_body(&body("OrderManager.OrderCompleted", "2024-05-01T10:00:00Z", detail), now());
        assert_eq!(e.unwrap().kind, OrderKind::Completed);
    }
    let mut no_detail: serde_json::Value =
        serde_json::from_str(&body("OrderManager.OrderCancelled", "2024-05-01T10:00:00Z", json!({}))).unwrap();
    no_detail.as_object_mut().unwrap().remove("detail");
    no_detail["account"] = json!(12);
    no_detail["resources"] = json!("x");
    assert_eq!(OrderEvent::from_value(&no_detail, now()).unwrap().kind, OrderKind::Cancelled);
}

#[test]
fn one_order_is_one_dedupe_key() {
    let key = |detail_type: &str, id: &str, detail: serde_json::Value| {
        let mut b: serde_json::Value =
            serde_json::from_str(&body(detail_type, "2024-05-01T10:00:00Z", detail)).unwrap();
        b["id"] = json!(id);
        OrderEvent::from_value(&b, now()).unwrap().dedupe
    };
    let a = key("OrderManager.OrderCompleted", "e1", json!({"orderId": "42"}));
    let b = key("OrderManager.OrderCompleted", "e2", json!({"orderId": 42}));
    assert_eq!(a, b, "the same order re-published under a new id, as string or number");
    assert_eq!(a.partition_key(), "Dedupe#Order#OrderManager.OrderCompleted#42");
    let c = key("OrderManager.OrderCancelled", "e2", json!({"orderId": "42"}));
    assert_ne!(a, c, "completing and cancelling one order are two events");
    let d = key("OrderManager.OrderCompleted", "e3", json!({"orderId": null}));
    assert_eq!(d, DedupeKey::Event("e3".into()));
    assert_eq!(d.partition_key(), "Dedupe#e3");
    let e = key("OrderManager.OrderCompleted", "e4", json!("a string detail"));
    assert_eq!(e, DedupeKey::Event("e4".into()));

    // Every partition key written is one the IAM grant admits (`dynamodb:LeadingKeys`).
    let admitted = |pk: &str| {
        WRITTEN_PARTITION_KEYS.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => pk.starts_with(prefix),
            None => pk == *p,
        })
    };
    for k in [&a, &c, &d, &e] {
        assert!(admitted(&k.partition_key()), "{}", k.partition_key());
    }
    assert!(admitted(AGGREGATE_PK));
    assert!(!admitted("Dedupe") && !admitted("aggregate") && !admitted("2024-05-01"));
}

#[test]
fn ids_have_limits() {
    let with_order_id =
        |order_id: serde_json::Value| waiting(json!({"orderId": order_id, "drinkOrder": {"drink": "L"}}));
    assert!(with_order_id(json!("x".repeat(MAX_ID_BYTES))).is_ok());
    assert!(matches!(with_order_id(json!("x".repeat(MAX_ID_BYTES + 1))), Err(BadEvent::BadOrderId(_))));
    // One rule: absent or null means "no order ID" (dedupe by event ID); anything else must be
    // a usable ID, or the record is bad: blank is not absent, and 100.0 is not the integer 100.
    for bad in
        [json!(""), json!("  "), json!(1.5), json!(100.0), json!(true), json!({"id": 1}), json!([1]), json!("a\nb")]
    {
        let err = with_order_id(bad.clone()).unwrap_err();
        assert!(matches!(err, BadEvent::BadOrderId(_)), "{bad}: {err}");
    }
    let with_id = |id: serde_json::Value| {
        let mut b: serde_json::Value =
            serde_json::from_str(&body("OrderManager.OrderCompleted", "2024-05-01T10:00:00Z", json!({}))).unwrap();
        b["id"] = id;
        OrderEvent::from_value(&b, now())
    };
    assert!(with_id(json!("x".repeat(MAX_ID_BYTES))).is_ok());
    for bad in [json!("x".repeat(MAX_ID_BYTES + 1)), json!(""), json!("Order#x"), json!(null), json!(true)] {
        let err = with_id(bad.clone()).unwrap_err();
        assert!(matches!(err, BadEvent::NotAnEvent(_)), "{bad}: {err}");
    }
}

#[test]
fn bad_events_are_named() {
    let cases = [
        (body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"orderId": "1"})), "no drink"),
        (
            body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"drinkOrder": {"drink": null}})),
            "no drink",
        ),
        (
            body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"drinkOrder": {"drink": 5}})),
            "no drink",
        ),
        (body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"drinkOrder": "Latte"})), "no drink"),
        (body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!("text")), "no drink"),
        (
            body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"drinkOrder": {"drink": "a#b"}})),
            "`#`",
        ),
        (body("OrderManager.WaitingCompletion", "2024-05-01T10:00:00Z", json!({"drinkOrder": {"drink": ""}})), "empty"),
        (body("OrderManager.Other", "2024-05-01T10:00:00Z", json!({})), "unknown detail-type"),
        (body("OrderManager.OrderCompleted", "yesterday", json!({})), "not an RFC 3339 timestamp"),
        ("{\"id\": \"x\"}".to_owned(), "missing field `source`"),
        ("[1]".to_owned(), "not an object"),
        ("not json".to_owned(), "not JSON"),
    ];
    for (b, want) in cases {
        let err = OrderEvent::from_body(&b, now()).unwrap_err().to_string();
        assert!(err.contains(want), "{err} for {b}");
    }
    let other = body("OrderManager.OrderCompleted", "2024-05-01T10:00:00Z", json!({})).replace(SOURCE, "someone.else");
    assert_eq!(OrderEvent::from_body(&other, now()).unwrap_err(), BadEvent::UnknownSource("someone.else".into()));
}

#[test]
fn schemas_cover_each_detail_type() {
    let schemas = detail_schemas();
    let names: Vec<&str> = schemas.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "OrderManager.WaitingCompletion.schema.json",
            "OrderManager.OrderCompleted.schema.json",
            "OrderManager.OrderCancelled.schema.json"
        ]
    );
    let waiting: serde_json::Value = serde_json::from_str(&schemas[0].1).unwrap();
    assert_eq!(waiting["title"], "OrderManager.WaitingCompletion detail");
    assert_eq!(waiting["required"], json!(["drinkOrder"]));
    let completed: serde_json::Value = serde_json::from_str(&schemas[1].1).unwrap();
    assert!(completed.get("required").is_none());
}

proptest::proptest! {
    /// Whatever a producer sends, a counted drink's item key never equals another metric's.
    #[test]
    fn no_drink_shares_a_metric_item(raw in "\\PC{0,8}(?i:totalsales|completed|cancelled)?\\PC{0,3}") {
        if let Ok(drink) = Drink::parse(&raw) {
            let day = NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
            let sk = MetricKey::new(day, Metric::Drink(drink.as_str().to_owned())).sort_key();
            for m in Fixed::VARIANTS.iter().map(|f| Metric::Fixed(*f)) {
                proptest::prop_assert_ne!(&sk, &MetricKey::new(day, m).sort_key());
            }
            proptest::prop_assert_eq!(sk.matches('#').count(), 1);
            proptest::prop_assert!(sk.len() <= 1024, "within DynamoDB's sort key limit");
        }
    }
}

#[test]
fn sort_keys_read_back_to_the_same_metric() {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap();
    for metric in [
        Metric::Fixed(Fixed::TotalSales),
        Metric::Fixed(Fixed::Completed),
        Metric::Fixed(Fixed::Cancelled),
        Metric::Drink("Flat White".into()),
        Metric::Drink("Caf\u{e9}".into()),
    ] {
        let key = MetricKey::new(day, metric);
        assert_eq!(MetricKey::parse_sort_key(&key.sort_key()), Some(key.clone()), "{}", key.sort_key());
    }
    assert_eq!(MetricKey::new(day, Metric::Fixed(Fixed::Completed)).sort_key(), "2024-05-01#Completed");
    // Only what PublishMetrics writes: no drink it would refuse, no unpadded day.
    for bad in [
        "2024-05-01#",
        "2024-05-01",
        "2024-13-01#Latte",
        "#TotalSales",
        "",
        "2024-05-01#Latte#2",
        "2024-5-1#Latte",
        "2024-05-01#totalsales",
    ] {
        assert_eq!(MetricKey::parse_sort_key(bad), None, "{bad}");
    }
}
