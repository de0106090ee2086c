//! Picking this node's runtime: Docker when its engine answers, else child processes.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::RuntimeChoice;
use crate::error::InputError;
use crate::runtime::RuntimeKind;

/// Asks the Docker engine's `/_ping` whether it answers, within a second.
pub async fn docker_answers(socket: &std::path::Path) -> Result<(), String> {
    let ping = async {
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
        let reply = String::from_utf8_lossy(&reply);
        if reply.starts_with("HTTP/1.") && reply.contains(" 200 ") {
            Ok(())
        } else {
            Err(format!(
                "unexpected answer: {}",
                reply.lines().next().unwrap_or("")
            ))
        }
    };
    tokio::time::timeout(Duration::from_secs(1), ping)
        .await
        .map_err(|_| "no answer within 1s".to_string())?
}

/// Resolves `auto` to Docker when its socket answers, else processes; an explicit `docker`
/// with no engine is bad input, so the node refuses to start rather than run nothing.
pub async fn choose(choice: RuntimeChoice) -> Result<RuntimeKind, InputError> {
    let socket = match super::docker::docker_socket() {
        Ok(socket) => socket,
        Err(e) if choice == RuntimeChoice::Docker => {
            return Err(InputError::new(format!(
                "--runtime docker: {e}; set DOCKER_HOST=unix:///path or use --runtime process"
            )))
        }
        Err(e) => {
            tracing::info!(reason = %e, "runtime auto: Docker unavailable, using process");
            return Ok(RuntimeKind::Process);
        }
    };
    match choice {
        RuntimeChoice::Process => Ok(RuntimeKind::Process),
        RuntimeChoice::Docker => match docker_answers(&socket).await {
            Ok(()) => Ok(RuntimeKind::Docker),
            Err(e) => Err(InputError::new(format!(
                "--runtime docker: the Docker engine at {} does not answer ({e}); start Docker, set DOCKER_HOST, or use --runtime process",
                socket.display()
            ))),
        },
        RuntimeChoice::Auto => match docker_answers(&socket).await {
            Ok(()) => {
                tracing::info!(socket = %socket.display(), "runtime auto: Docker answers, using docker");
                Ok(RuntimeKind::Docker)
            }
            Err(e) => {
                tracing::info!(socket = %socket.display(), reason = %e, "runtime auto: Docker unavailable, using process");
                Ok(RuntimeKind::Process)
            }
        },
    }
}
