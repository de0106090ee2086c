//! Reaching the Docker engine: its socket, the API version it speaks, and its errors mapped to what the agent can act on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::ClientVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime::{Result, RuntimeError};

/// The Docker socket path: `DOCKER_HOST` when it names a unix socket, else the standard one.
pub fn docker_socket() -> Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => Err(RuntimeError::Unavailable {
                reason: format!("DOCKER_HOST={host}: only unix:// sockets are supported"),
                source: None,
            }),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Reads `Api-Version` from the engine's unversioned `/_ping`, within five seconds.
pub(super) async fn ping_api_version(socket: &Path) -> Result<ClientVersion> {
    let ping = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).into_owned())
    };
    let unreachable = |reason: String, source: Option<crate::runtime::BoxError>| RuntimeError::Unavailable {
        reason: format!("the Docker engine at {} {reason}", socket.display()),
        source,
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), ping)
        .await
        .map_err(|_| unreachable("did not answer /_ping within 5s".into(), None))?
        .map_err(|e| unreachable(format!("cannot be reached ({e})"), Some(e.into())))?;
    let header = reply
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("api-version")
                .then(|| v.trim().to_string())
        })
        .ok_or_else(|| {
            unreachable(
                format!(
                    "sent no Api-Version header (first line: {:?})",
                    reply.lines().next().unwrap_or("")
                ),
                None,
            )
        })?;
    parse_api_version(&header)
        .ok_or_else(|| unreachable(format!("sent an unreadable Api-Version {header:?}"), None))
}

pub(super) fn parse_api_version(s: &str) -> Option<ClientVersion> {
    let (major, minor) = s.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

pub(super) fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's own words when it gave any, since they say what to fix.
pub(super) fn server_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

pub(super) fn is_connection_error(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::SocketNotFoundError(_)
            | BollardError::RequestTimeoutError
    )
}

pub(super) fn unavailable(context: String, e: BollardError) -> RuntimeError {
    RuntimeError::Unavailable {
        reason: format!("{context}: {e}"),
        source: Some(e.into()),
    }
}

/// Maps an engine error to what the agent can act on; `id` turns a 404 into `NotFound`.
pub(super) fn classify(e: BollardError, context: String, id: Option<&str>) -> RuntimeError {
    if is_connection_error(&e) {
        return unavailable(context, e);
    }
    match (status_of(&e), id) {
        (Some(404), Some(id)) => RuntimeError::NotFound { id: id.to_string() },
        (Some(400), _) => RuntimeError::InvalidSpec {
            reason: format!("{context}: {}", server_message(&e)),
            source: Some(e.into()),
        },
        _ => RuntimeError::Other {
            context: format!("{context}: {}", server_message(&e)),
            source: Some(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::docker::MIN_API_VERSION;

    #[test]
    fn api_versions_parse_and_order() {
        let v = parse_api_version("1.41").unwrap();
        assert!(v >= MIN_API_VERSION);
        assert!(parse_api_version("1.40").unwrap() < MIN_API_VERSION);
        assert!(parse_api_version("1.53").unwrap() > MIN_API_VERSION);
        assert!(parse_api_version("x").is_none());
    }
}
