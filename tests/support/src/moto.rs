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
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(deploy::https_client())
            .endpoint_url(&self.endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }
}
