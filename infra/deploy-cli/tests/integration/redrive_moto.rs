//! The redrive library (`deploy redrive`'s): dead letters go back to MetricsQueue and it says
//! how many. moto 5.2 has no message move tasks, so a small proxy in front of it answers
//! `StartMessageMoveTask` and `ListMessageMoveTasks` as SQS documents them (the source must be a
//! dead-letter queue of some queue; one task at a time; the moved messages keep their bodies),
//! moving the messages for real through moto, and forwards every other call to moto unchanged.

use test_support as support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use support::moto::Moto;
use support::proxy;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A finished task, as ListMessageMoveTasks reports it.
#[derive(Clone, Default)]
struct Task {
    source: String,
    destination: String,
    moved: u64,
}

async fn respond(conn: &mut TcpStream, status: &str, body: &Value) {
    let head = format!("HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.0\r\n");
    proxy::respond(conn, &head, body.to_string().as_bytes()).await;
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, arn: &str) -> Option<String> {
    let name = arn.rsplit(':').next()?;
    sqs.get_queue_url().queue_name(name).send().await.ok()?.queue_url().map(str::to_owned)
}

/// StartMessageMoveTask, done at once: the source must be some queue's dead-letter queue.
async fn start_task(sqs: &aws_sdk_sqs::Client, request: &Value, tasks: &Mutex<Vec<Task>>) -> Result<Value, Value> {
    let invalid = |m: &str| json!({"__type": "com.amazonaws.sqs#InvalidParameterValueException", "message": m});
    let source = request["SourceArn"].as_str().ok_or_else(|| invalid("SourceArn is required"))?.to_owned();
    let destination =
        request["DestinationArn"].as_str().ok_or_else(|| invalid("DestinationArn is missing"))?.to_owned();
    let source_url = queue_url(sqs, &source).await.ok_or_else(|| invalid("no such source queue"))?;
    let destination_url = queue_url(sqs, &destination).await.ok_or_else(|| invalid("no such destination queue"))?;
    let redrives_to_source = sqs
        .get_queue_attributes()
        .queue_url(&destination_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes().and_then(|a| a.get(&QueueAttributeName::RedrivePolicy)).cloned())
        .is_some_and(|p| p.contains(&source));
    if !redrives_to_source {
        return Err(invalid("Source queue must be configured as a Dead Letter Queue."));
    }
    let mut moved = 0;
    loop {
        let out = sqs.receive_message().queue_url(&source_url).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            sqs.send_message().queue_url(&destination_url).message_body(m.body().unwrap()).send().await.unwrap();
            sqs.delete_message()
                .queue_url(&source_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            moved += 1;
        }
    }
    tasks.lock().unwrap().push(Task { source, destination, moved });
    Ok(json!({"TaskHandle": format!("task-{moved}")}))
}

/// Serves SQS's message move calls itself and forwards everything else to moto.
async fn proxy(listener: TcpListener, moto: String, sqs: aws_sdk_sqs::Client, tasks: Arc<Mutex<Vec<Task>>>) {
    let upstream = moto.trim_start_matches("http://").to_owned();
    loop {
        let Ok((mut conn, _)) = listener.accept().await else { return };
        let (sqs, tasks, upstream) = (sqs.clone(), tasks.clone(), upstream.clone());
        tokio::spawn(async move {
            let Some((head, body)) = proxy::read_request(&mut conn).await else { return };
            let target = proxy::header(&head, "x-amz-target").unwrap_or_default().to_owned();
            match target.as_str() {
                "AmazonSQS.StartMessageMoveTask" => {
                    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                    match start_task(&sqs, &request, &tasks).await {
                        Ok(v) => respond(&mut conn, "200 OK", &v).await,
                        Err(e) => respond(&mut conn, "400 Bad Request", &e).await,
                    }
                }
                "AmazonSQS.ListMessageMoveTasks" => {
                    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let results: Vec<Value> = tasks
                        .lock()
                        .unwrap()
                        .iter()
                        .rev()
                        .filter(|t| request["SourceArn"] == t.source)
                        .map(|t| {
                            json!({"Status": "COMPLETED", "SourceArn": t.source, "DestinationArn": t.destination,
                                "ApproximateNumberOfMessagesMoved": t.moved, "ApproximateNumberOfMessagesToMove": t.moved,
                                "StartedTimestamp": 1_700_000_000_000u64})
                        })
                        .collect();
                    respond(&mut conn, "200 OK", &json!({"Results": results})).await;
                }
                _ => {
                    if let Some((head, body)) = proxy::relay(&upstream, &head, &body).await {
                        proxy::respond(&mut conn, &head, &body).await;
                    }
                }
            }
            let _ = conn.shutdown().await;
        });
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redrive_moves_dead_letters_back_and_says_how_many() {
    let moto = Moto::start();
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    // The standalone stack's queues, as it names and wires them.
    let props = metrics_stack::MetricsStackProps::standalone();
    let dlq = sqs.create_queue().queue_name(&props.dead_letter_queue_name).send().await.unwrap();
    let dlq_url = dlq.queue_url().unwrap().to_owned();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue = sqs
        .create_queue()
        .queue_name(&props.queue_name)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 10}).to_string(),
        )
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_owned();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let tasks = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(proxy(listener, moto.endpoint.clone(), sqs.clone(), tasks.clone()));

    // The stack's queues, found by their names: nothing to move, no task is started.
    let via = sqs_via(&endpoint).await;
    let queues = deploy::redrive::queues(&via, &props.queue_name, &props.dead_letter_queue_name).await.unwrap();
    assert_eq!(queues.source_name, props.queue_name);
    assert!(queues.dead_letters_url.ends_with("/MetricsQueue-DLQ"), "{queues:?}");
    assert_eq!(queues.dead_letters_arn, dlq_arn);
    let poll = Duration::from_millis(50);
    let done = deploy::redrive::redrive(&via, &queues, poll, Duration::from_secs(30), |_| {}).await.unwrap();
    assert_eq!(done, deploy::redrive::Redriven { waiting_before: 0, moved: 0 });
    assert!(tasks.lock().unwrap().is_empty());

    let bodies = ["{\"id\": \"a\"}", "{\"id\": \"b\"}", "not json, but kept as it was"];
    for b in bodies {
        sqs.send_message().queue_url(&dlq_url).message_body(b).send().await.unwrap();
    }
    let mut seen = Vec::new();
    let done =
        deploy::redrive::redrive(&via, &queues, poll, Duration::from_secs(30), |p| seen.push(p.clone())).await.unwrap();
    assert_eq!(done, deploy::redrive::Redriven { waiting_before: 3, moved: 3 });
    let last = seen.last().expect("progress was reported");
    assert_eq!((last.status.as_str(), last.moved, last.to_move), ("COMPLETED", 3, 3), "{seen:?}");

    let mut back = Vec::new();
    loop {
        let out = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(10).send().await.unwrap();
        if out.messages().is_empty() {
            break;
        }
        back.extend(out.messages().iter().map(|m| m.body().unwrap().to_owned()));
    }
    back.sort();
    let mut want: Vec<String> = bodies.iter().map(|b| (*b).to_owned()).collect();
    want.sort();
    assert_eq!(back, want, "every dead letter is back, unchanged");

    // A queue that is no one's dead-letter queue is refused, and the error says so.
    let other = sqs.create_queue().queue_name("NotADlq").send().await.unwrap();
    sqs.send_message().queue_url(other.queue_url().unwrap()).message_body("x").send().await.unwrap();
    let queues = deploy::redrive::queues(&via, &props.queue_name, "NotADlq").await.unwrap();
    let err = deploy::redrive::redrive(&via, &queues, poll, Duration::from_secs(5), |_| {}).await.unwrap_err();
    assert!(matches!(err, deploy::redrive::RedriveError::Start { .. }), "{err:?}");
    assert!(err.to_string().contains("must be configured as a Dead Letter Queue"), "{err}");

    // A missing queue is named.
    let err = deploy::redrive::queues(&sqs, "NoSuchQueue", &props.dead_letter_queue_name).await.unwrap_err();
    assert!(err.to_string().contains("there is no queue `NoSuchQueue`"), "{err}");
}

async fn sqs_via(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&support::moto::sdk_config_at(endpoint).await)
}
