//! HTTP client for the admin commands; failures say which server was tried and how to pick another.

use anyhow::anyhow;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A node's API, as named by `--server` / `EVERYNODE_SERVER`.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(server: &str) -> anyhow::Result<Client> {
        // Writes may wait for an election (a few seconds) before the server answers.
        Client::with_timeout(server, Some(std::time::Duration::from_secs(30)))
    }

    /// A client whose requests give up after `timeout`; `None` for answers that stream
    /// (`logs --follow`) or wait long (`leave`).
    pub fn with_timeout(server: &str, timeout: Option<std::time::Duration>) -> anyhow::Result<Client> {
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
            http: match timeout {
                Some(t) => reqwest::Client::builder().timeout(t),
                None => reqwest::Client::builder(),
            }
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?,
        })
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.http.get(self.url(path))).await
    }

    /// POSTs `body` as JSON and decodes the JSON answer (`()` for an empty one).
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send::<Option<()>>(self.http.delete(self.url(path)))
            .await
            .map(|_| ())
    }

    /// GETs `path` and hands back the response to be read as it streams in; an error status
    /// is turned into the server's message.
    pub async fn open(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let url = resp.url().to_string();
        let body = resp.bytes().await.unwrap_or_default();
        Err(anyhow!(error_message(&url, status, &body)))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let url = resp.url().to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("{url}: reading the answer: {e}"))?;
        if !status.is_success() {
            return Err(anyhow!(error_message(&url, status, &body)));
        }
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| anyhow!("{url}: unexpected answer: {e}"))
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

/// The server words its errors for people (`{"error": "..."}`): show them as they are.
fn error_message(url: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            format!(
                "{url}: server answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            )
        })
}
