//! Following an instance's log file: new output as it is appended, until the process exits.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

/// How often `follow_logs` looks for new output; a tenth of a second feels live to a person.
pub(super) const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Largest chunk `follow_logs` hands out at once, so a burst of output does not sit in memory.
pub(super) const FOLLOW_CHUNK: u64 = 64 * 1024;

/// Where `follow_logs` is in one instance's log file.
pub(super) struct Follow {
    pub(super) rec: Record,
    pub(super) path: PathBuf,
    /// Bytes of the file already handed out.
    pub(super) offset: u64,
    /// The tail read at the start, handed out first.
    pub(super) first: Option<Vec<u8>>,
    /// An error was handed out: the stream ends.
    pub(super) done: bool,
}

impl Follow {
    pub(super) async fn next(mut self) -> Option<(Result<Vec<u8>>, Follow)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        while !self.done {
            // Liveness first: whatever the process wrote before it died is in the file by now,
            // so one more read drains it.
            let alive = process_alive(&self.rec);
            match read_from(&self.path, self.offset).await {
                Ok(Some(chunk)) if !chunk.is_empty() => {
                    self.offset += chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                Ok(Some(_)) if alive => tokio::time::sleep(FOLLOW_POLL).await,
                Ok(Some(_)) => return None,
                // Removed: nothing more will come.
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    let err = RuntimeError::other(format!("following {}", self.path.display()), e);
                    return Some((Err(err), self));
                }
            }
            // A file cut shorter than what was read (by hand) is followed from its start again.
            if tokio::fs::metadata(&self.path)
                .await
                .is_ok_and(|m| m.len() < self.offset)
            {
                self.offset = 0;
            }
        }
        None
    }
}

/// Up to [`FOLLOW_CHUNK`] bytes of `path` from `offset`; `None` when the file is gone.
pub(super) async fn read_from(path: &Path, offset: u64) -> io::Result<Option<Vec<u8>>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.seek(io::SeekFrom::Start(offset)).await?;
    let mut chunk = Vec::new();
    file.take(FOLLOW_CHUNK).read_to_end(&mut chunk).await?;
    Ok(Some(chunk))
}
