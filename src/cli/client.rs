//! HTTP client for the admin commands; failures say which server was tried and how to pick another.

use anyhow::anyhow;
use serde::de::DeserializeOwned;

/// A node's API, as named by `--server` / `EVERYNODE_SERVER`.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str) -> anyhow::Result<Client> {
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            crate::error::InputError::new(format!(
                "--server {server}: not a URL ({e}); use e.g. http://10.0.0.1:9495"
            ))
        })?;
        Ok(Client {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
        })
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(anyhow!("{url}: server answered {status}: {}", body.trim()));
        }
        resp.json()
            .await
            .map_err(|e| anyhow!("{url}: unexpected answer: {e}"))
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        // The innermost cause is the one people recognise ("Connection refused").
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        anyhow!(
            "cannot reach the everynode API at {} ({cause}); is an agent running there? point elsewhere with --server URL or EVERYNODE_SERVER",
            self.base
        )
    }
}
