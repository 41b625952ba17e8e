//! Moving dead letters back to MetricsQueue once their cause is fixed, with SQS's own message
//! move task (`StartMessageMoveTask`, "DLQ redrive"): SQS moves them server-side, keeps their
//! bodies, and PublishMetrics counts them on their next delivery (exactly once, by order).
//! Returns data; progress goes to a callback, so only the binary prints.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;

/// The two queues of a redrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queues {
    pub dead_letters_name: String,
    pub dead_letters_url: String,
    pub dead_letters_arn: String,
    pub source_name: String,
    pub source_arn: String,
}

/// Why a redrive did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("there is no queue `{name}` here (is the stack deployed in this account and region?): {message}")]
    NoQueue { name: String, message: String },
    #[error("cannot read the attributes of `{queue}`: {message}")]
    Attributes { queue: String, message: String },
    #[error("SQS refused to start moving messages from `{queue}`: {message}")]
    Start { queue: String, message: String },
    #[error("cannot follow the message move task: {0}")]
    List(String),
    #[error("the message move task ended {status}: {reason} ({moved} messages had been moved)")]
    TaskFailed { status: String, reason: String, moved: u64 },
    #[error("the message move task did not finish within {0:?}; it goes on in SQS (see ListMessageMoveTasks)")]
    Timeout(Duration),
}

/// The task's progress, as SQS reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub status: String,
    pub moved: u64,
    pub to_move: u64,
}

/// What a redrive did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redriven {
    /// Dead letters waiting before the move (SQS's approximate count).
    pub waiting_before: u64,
    /// Messages moved back, as the completed task reports it.
    pub moved: u64,
}

async fn url_and_arn(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<(String, String), RedriveError> {
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| RedriveError::NoQueue { name: name.to_owned(), message: DisplayErrorContext(&e).to_string() })?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let arn = attribute(sqs, name, &url, QueueAttributeName::QueueArn).await?;
    Ok((url, arn))
}

async fn attribute(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    url: &str,
    attribute: QueueAttributeName,
) -> Result<String, RedriveError> {
    let out =
        sqs.get_queue_attributes().queue_url(url).attribute_names(attribute.clone()).send().await.map_err(|e| {
            RedriveError::Attributes { queue: name.to_owned(), message: DisplayErrorContext(&e).to_string() }
        })?;
    out.attributes().and_then(|a| a.get(&attribute)).cloned().ok_or_else(|| RedriveError::Attributes {
        queue: name.to_owned(),
        message: format!("no {attribute} in the answer"),
    })
}

/// Finds the queues by name (the stack's physical names).
pub async fn queues(
    sqs: &aws_sdk_sqs::Client,
    source_name: &str,
    dead_letters_name: &str,
) -> Result<Queues, RedriveError> {
    let (dead_letters_url, dead_letters_arn) = url_and_arn(sqs, dead_letters_name).await?;
    let (_, source_arn) = url_and_arn(sqs, source_name).await?;
    Ok(Queues {
        dead_letters_name: dead_letters_name.to_owned(),
        dead_letters_url,
        dead_letters_arn,
        source_name: source_name.to_owned(),
        source_arn,
    })
}

/// Moves every dead letter back to the source queue and waits until SQS reports the task
/// complete, polling every `poll` for at most `timeout`. An empty DLQ starts no task.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    q: &Queues,
    poll: Duration,
    timeout: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Redriven, RedriveError> {
    // The one depth reader: an answer that is not a count is an error, not an empty DLQ.
    let waiting = crate::queue::depth(sqs, &q.dead_letters_url)
        .await
        .map_err(|e| RedriveError::Attributes { queue: q.dead_letters_name.clone(), message: e.to_string() })?
        .waiting;
    if waiting == 0 {
        return Ok(Redriven::default());
    }
    sqs.start_message_move_task().source_arn(&q.dead_letters_arn).destination_arn(&q.source_arn).send().await.map_err(
        |e| RedriveError::Start { queue: q.dead_letters_name.clone(), message: DisplayErrorContext(&e).to_string() },
    )?;
    let started = tokio::time::Instant::now();
    loop {
        let out = sqs
            .list_message_move_tasks()
            .source_arn(&q.dead_letters_arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| RedriveError::List(DisplayErrorContext(&e).to_string()))?;
        let task = out.results().first().ok_or_else(|| RedriveError::List("SQS lists no move task".to_owned()))?;
        let progress = Progress {
            status: task.status().unwrap_or("UNKNOWN").to_owned(),
            moved: u64::try_from(task.approximate_number_of_messages_moved()).unwrap_or(0),
            to_move: task
                .approximate_number_of_messages_to_move()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(waiting),
        };
        on_progress(&progress);
        match progress.status.as_str() {
            "COMPLETED" => return Ok(Redriven { waiting_before: waiting, moved: progress.moved }),
            "FAILED" | "CANCELLED" => {
                return Err(RedriveError::TaskFailed {
                    status: progress.status,
                    reason: task.failure_reason().unwrap_or("no reason given").to_owned(),
                    moved: progress.moved,
                })
            }
            _ if started.elapsed() >= timeout => return Err(RedriveError::Timeout(timeout)),
            _ => tokio::time::sleep(poll).await,
        }
    }
}
