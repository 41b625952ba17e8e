//! A moto server (the pinned one from the tools' venv) on 127.0.0.1, started by the test that
//! needs it and stopped when dropped.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use local::MotoServer;

pub struct Moto {
    _server: MotoServer,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let server = MotoServer::start(&super::tool("moto_server")).unwrap_or_else(|e| panic!("{e:#}"));
        Moto { endpoint: server.endpoint.clone(), _server: server }
    }

    /// SDK configuration for this server: test credentials, us-east-1.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_at(&self.endpoint).await
    }
}

/// SDK configuration for a local `endpoint` (moto, or a test's stand-in in front of it): test
/// credentials, us-east-1.
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(connection::https_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

impl Moto {
    /// A Query-protocol call (IAM's `Action=...&Version=...` form) answered by this server: the
    /// body of a 200 answer. For read-backs whose SDK client the tests would compile for that
    /// alone. moto checks no signature, only the service the credential scope names.
    pub async fn query(&self, service: &str, params: &[(&str, &str)]) -> String {
        let body: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", urlencoding::encode(v))).collect();
        let body = body.join("&");
        let host = self.endpoint.trim_start_matches("http://");
        let head = format!(
            "POST / HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded; charset=utf-8\r\n\
             content-length: {}\r\nauthorization: AWS4-HMAC-SHA256 \
             Credential=testing/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n",
            body.len()
        );
        let (head, answer) = super::proxy::relay(host, &head, body.as_bytes()).await.expect("moto answers");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(head.starts_with("HTTP/1.1 200"), "{service} {params:?}: {head}{answer}");
        assert!(super::proxy::header(&head, "transfer-encoding").is_none(), "a chunked answer: {head}");
        answer
    }
}

/// The text of the first `<name>` element of an XML answer, its entities decoded.
pub fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    let text = &xml[start..end];
    Some(
        text.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#34;", "\"")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_elements_are_decoded_once() {
        let xml = "<R><PolicyDocument>%7B%22A%22%3A&quot;*&quot;, &amp;quot;x&lt;y&gt;</PolicyDocument><PolicyDocument>2</PolicyDocument></R>";
        assert_eq!(super::xml_element(xml, "PolicyDocument").unwrap(), "%7B%22A%22%3A\"*\", &quot;x<y>");
        assert_eq!(super::xml_element(xml, "Missing"), None);
        assert_eq!(super::xml_element("<A>unclosed", "A"), None);
    }
}
