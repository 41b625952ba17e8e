//! What SQS says of a queue: its depth (for `destroy`'s listing, and for `local` while the
//! queue drains).

use aws_sdk_sqs::types::QueueAttributeName;

use crate::error::DeployError;

/// Queue depth as SQS reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Depth {
    pub waiting: u64,
    pub in_flight: u64,
}

/// The depth of the queue at `queue_url`. An attribute SQS leaves out or answers with
/// something other than a count is an error: a drain must not read it as an empty queue.
pub async fn depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<Depth, DeployError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| DeployError::aws(format!("read the depth of {queue_url}"), &e))?;
    from_attributes(queue_url, &out.attributes().cloned().unwrap_or_default())
}

fn from_attributes(
    queue_url: &str,
    attrs: &std::collections::HashMap<QueueAttributeName, String>,
) -> Result<Depth, DeployError> {
    let get = |k: QueueAttributeName| {
        let value = attrs.get(&k);
        value.and_then(|v| v.parse().ok()).ok_or_else(|| DeployError::Aws {
            what: format!("read the depth of {queue_url}"),
            message: format!("SQS answered {} = {value:?}, not a count", k.as_str()),
        })
    };
    Ok(Depth {
        waiting: get(QueueAttributeName::ApproximateNumberOfMessages)?,
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_is_two_counts_or_an_error_naming_the_attribute() {
        let attrs = |waiting: Option<&str>, in_flight: Option<&str>| {
            let mut m = std::collections::HashMap::new();
            if let Some(w) = waiting {
                m.insert(QueueAttributeName::ApproximateNumberOfMessages, w.to_owned());
            }
            if let Some(f) = in_flight {
                m.insert(QueueAttributeName::ApproximateNumberOfMessagesNotVisible, f.to_owned());
            }
            m
        };
        assert_eq!(from_attributes("q", &attrs(Some("0"), Some("0"))).unwrap(), Depth::default());
        assert_eq!(
            from_attributes("q", &attrs(Some("500"), Some("10"))).unwrap(),
            Depth { waiting: 500, in_flight: 10 }
        );
        for (a, says) in [
            (attrs(None, Some("0")), "ApproximateNumberOfMessages = None"),
            (attrs(Some("0"), None), "ApproximateNumberOfMessagesNotVisible = None"),
            (attrs(Some("-1"), Some("0")), "ApproximateNumberOfMessages = Some(\"-1\")"),
            (attrs(Some("0"), Some("many")), "ApproximateNumberOfMessagesNotVisible = Some(\"many\")"),
        ] {
            let e = from_attributes("https://q", &a).unwrap_err().to_string();
            assert!(e.starts_with("cannot read the depth of https://q: SQS answered "), "{e}");
            assert!(e.contains(says), "{e} should say {says}");
        }
    }
}
