//! The HTTP client nodes use to call each other: it signs every request, checks the signature of every successful answer, and speaks https when the cluster's API does.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::node_auth::{NodeAuth, NodeAuthError, ANSWER_HEADER, REQUEST_HEADER};

/// How a node reaches its peers; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct PeerHttp {
    client: reqwest::Client,
    /// `http` or `https`: every node of a cluster serves its API the same way.
    scheme: &'static str,
    /// `None` only in tests that run Raft without a cluster secret.
    auth: Option<Arc<NodeAuth>>,
    /// The trust for peers' certificates, for clients built later (streams).
    roots: Option<Vec<reqwest::Certificate>>,
}

/// A peer's answer, its body read whole (and, when signed, checked).
#[derive(Debug)]
pub struct PeerAnswer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Why a call to a peer got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Not connected, or no answer within the timeout: the peer may be down.
    #[error("{url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The transfer failed midway.
    #[error("{url}: {source}")]
    Transfer {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not signed with this cluster's key: a stranger or a forgery answered.
    #[error("{url}: answer refused: {source}")]
    Unauthentic {
        url: String,
        #[source]
        source: NodeAuthError,
    },
}

impl PeerError {
    /// Sorts a transport error: no connection or no answer in time is `Unreachable`, anything
    /// else (a reset mid-transfer, a broken body) is `Transfer`.
    fn of(url: &str, source: reqwest::Error) -> PeerError {
        let url = url.to_string();
        if source.is_connect() || source.is_timeout() {
            PeerError::Unreachable { url, source }
        } else {
            PeerError::Transfer { url, source }
        }
    }

    /// Down, refusing, or timed out, as opposed to a failure after the request went out.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, PeerError::Unreachable { .. })
    }
}

impl PeerHttp {
    /// `roots`, when given, turns https on and is the only trust for peers' certificates.
    pub fn new(
        auth: Option<Arc<NodeAuth>>,
        roots: Option<&[reqwest::Certificate]>,
        connect_timeout: Duration,
        timeout: Option<Duration>,
    ) -> Result<PeerHttp, reqwest::Error> {
        let mut builder = reqwest::Client::builder().connect_timeout(connect_timeout);
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        if let Some(roots) = roots {
            builder = builder.tls_built_in_root_certs(false);
            for cert in roots {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        Ok(PeerHttp {
            client: builder.build()?,
            scheme: if roots.is_some() { "https" } else { "http" },
            auth,
            roots: roots.map(<[_]>::to_vec),
        })
    }

    /// A plain client with the same trust, for answers that stream (followed logs) and so
    /// cannot have an overall timeout or a body signature.
    pub fn stream_client(&self, timeout: Option<Duration>) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(2));
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        if let Some(roots) = &self.roots {
            builder = builder.tls_built_in_root_certs(false);
            for cert in roots {
                builder = builder.add_root_certificate(cert.clone());
            }
        }
        builder.build()
    }

    /// Plain http without signatures, for tests of the Raft transport alone.
    pub fn unsigned() -> PeerHttp {
        PeerHttp::new(None, None, Duration::from_secs(1), None).expect("building an HTTP client")
    }

    /// `api_addr` as gossiped (`HOST:PORT`, or a full URL in tests) joined with `path`.
    pub fn url(&self, api_addr: &str, path: &str) -> String {
        let base = api_addr.trim_end_matches('/');
        if base.contains("://") {
            format!("{base}{path}")
        } else {
            format!("{}://{base}{path}", self.scheme)
        }
    }

    /// Sends one signed request and reads the whole answer; a successful answer must be signed.
    pub async fn call(
        &self,
        method: Method,
        api_addr: &str,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Option<Duration>,
    ) -> Result<PeerAnswer, PeerError> {
        let url = self.url(api_addr, path);
        let body = body.unwrap_or_default();
        let mut req = self.client.request(method.clone(), &url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if !body.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json");
        }
        let signed = self
            .auth
            .as_ref()
            .map(|a| a.sign_request(method.as_str(), path, &body, super::unix_millis()));
        if let Some(s) = &signed {
            req = req.header(REQUEST_HEADER, &s.header);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|source| PeerError::of(&url, source))?;
        let status = resp.status();
        let answer_mac = resp
            .headers()
            .get(ANSWER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.map_err(|source| PeerError::of(&url, source))?;
        if let (Some(auth), Some(signed), true) = (&self.auth, &signed, status.is_success()) {
            auth.verify_answer(&signed.nonce, status.as_u16(), answer_mac.as_deref(), &body)
                .map_err(|source| PeerError::Unauthentic {
                    url: url.clone(),
                    source,
                })?;
        }
        Ok(PeerAnswer {
            status,
            body: body.to_vec(),
        })
    }
}
