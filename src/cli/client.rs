//! HTTP client for the admin commands; failures say which server was tried and how to pick another.

use std::path::Path;

use anyhow::anyhow;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::security::secret::{ADMIN_TOKEN_FILE, READONLY_TOKEN_FILE};

/// Where admin commands go and with what credentials, resolved once from the global flags.
#[derive(Clone)]
pub struct Target {
    /// `--server` / `EVERYNODE_SERVER`, as given.
    pub server: String,
    pub token: TokenSource,
    /// `--ca-cert`: the only roots trusted for https; `None` talks plain http by default.
    pub roots: Option<Vec<reqwest::Certificate>>,
}

impl Target {
    /// The same credentials towards another node's API (`HOST:PORT` as gossiped), with the
    /// scheme of the server first talked to.
    pub fn with_node(&self, api_addr: &str) -> Target {
        let scheme = self
            .server
            .split_once("://")
            .map(|(s, _)| s)
            .unwrap_or(self.default_scheme());
        Target {
            server: if api_addr.contains("://") {
                api_addr.to_string()
            } else {
                format!("{scheme}://{api_addr}")
            },
            ..self.clone()
        }
    }

    fn default_scheme(&self) -> &'static str {
        if self.roots.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// The API token and where it came from (or every place looked at), for error messages.
#[derive(Clone, Debug)]
pub struct TokenSource {
    pub token: Option<String>,
    pub origin: String,
}

impl TokenSource {
    /// `--token` / `EVERYNODE_TOKEN`, else the admin token of the node whose data dir is
    /// `data_dir` (default: this host's), else its read-only token.
    pub fn resolve(given: Option<String>, data_dir: Option<&Path>) -> TokenSource {
        if let Some(token) = given.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) {
            return TokenSource {
                token: Some(token),
                origin: "--token / EVERYNODE_TOKEN".into(),
            };
        }
        let dir = data_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(crate::config::default_data_dir);
        let mut looked = Vec::new();
        for name in [ADMIN_TOKEN_FILE, READONLY_TOKEN_FILE] {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    return TokenSource {
                        token: Some(text.trim().to_string()),
                        origin: path.display().to_string(),
                    }
                }
                Ok(_) => looked.push(format!("{} is empty", path.display())),
                Err(e) => looked.push(format!("{}: {e}", path.display())),
            }
        }
        TokenSource {
            token: None,
            origin: format!(
                "--token and EVERYNODE_TOKEN are unset, and no token file could be read ({})",
                looked.join("; ")
            ),
        }
    }
}

/// A node's API, as named by `--server` / `EVERYNODE_SERVER`.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: TokenSource,
}

impl Client {
    pub fn new(target: &Target) -> anyhow::Result<Client> {
        // Writes may wait for an election (a few seconds) before the server answers.
        Client::with_timeout(target, Some(std::time::Duration::from_secs(30)))
    }

    /// A client whose requests give up after `timeout`; `None` for answers that stream
    /// (`logs --follow`) or wait long (`leave`).
    pub fn with_timeout(target: &Target, timeout: Option<std::time::Duration>) -> anyhow::Result<Client> {
        let server = target.server.as_str();
        let base = if server.contains("://") {
            server.to_string()
        } else {
            format!("{}://{server}", target.default_scheme())
        };
        let parsed = reqwest::Url::parse(&base).map_err(|e| {
            crate::error::InputError::new(format!(
                "--server {server}: not a URL ({e}); use e.g. http://10.0.0.1:9495"
            ))
        })?;
        let mut builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5));
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        if let Some(roots) = &target.roots {
            builder = builder.tls_built_in_root_certs(false);
            for cert in roots {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        Ok(Client {
            base: parsed.as_str().trim_end_matches('/').to_string(),
            http: builder.build()?,
            token: target.token.clone(),
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
        let mut req = self.http.get(self.url(path));
        if let Some(token) = &self.token.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
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
        let req = match &self.token.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        let url = resp.url().to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|e| anyhow!("{url}: reading the answer: {e}"))?;
        if !status.is_success() {
            // The server words its errors for people: show them as they are.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| {
                    format!(
                        "{url}: server answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )
                });
            return Err(match (status, &self.token.token) {
                (StatusCode::UNAUTHORIZED, None) => anyhow!(
                    "the everynode API at {} needs a token and none was found: {}; pass --token TOKEN or set \
                     EVERYNODE_TOKEN (the token is in DATA_DIR/admin-token on any node of the cluster), or point \
                     --data-dir / EVERYNODE_DATA_DIR at this host's node data dir",
                    self.base,
                    self.token.origin
                ),
                (StatusCode::UNAUTHORIZED, Some(_)) => anyhow!(
                    "the everynode API at {} refused the token from {}: {message}; use the token of the cluster \
                     behind --server (DATA_DIR/admin-token on any of its nodes) with --token or EVERYNODE_TOKEN",
                    self.base,
                    self.token.origin
                ),
                (StatusCode::FORBIDDEN, _) => anyhow!("{message} (token from {})", self.token.origin),
                _ => anyhow!(message),
            });
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
        let tls_hint = if self.base.starts_with("https://") {
            "; for https pass the CA certificate that signed the API's certificate with --ca-cert (EVERYNODE_CA_CERT)"
        } else {
            ""
        };
        anyhow!(
            "cannot reach the everynode API at {} ({cause}); is an agent running there? point elsewhere with --server URL or EVERYNODE_SERVER{tls_hint}",
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
