//! An instance's log file: read from its end, rotated at a size, and followed as it grows until the process exits.

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

/// A log file is rotated once it passes this size, as Docker's json-file `max-size`.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;

/// Rotated files kept beside the current one (`<id>.log.1` newest ... `<id>.log.N` oldest).
pub const DEFAULT_KEPT_LOGS: usize = 3;

/// Chunk read backwards from the end of a log when looking for its last lines.
const TAIL_CHUNK: u64 = 64 * 1024;

/// The last `tail` lines of the log at `path` (the whole file when `None`) and the file's length
/// then. Lines are found from the end of the file, so a tail of a large log reads a few chunks,
/// never the whole file. A missing file is empty.
pub(super) async fn read_tail(path: &Path, tail: Option<usize>) -> io::Result<(Vec<u8>, u64)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let len = file.metadata().await?.len();
    let Some(lines) = tail else {
        let mut all = Vec::new();
        file.read_to_end(&mut all).await?;
        let len = all.len() as u64;
        return Ok((all, len));
    };
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // One more newline than lines wanted marks where the first of them begins; a newline
    // ending the file ends the last line rather than starting another.
    let wanted = lines + usize::from(len > 0);
    let mut newlines = 0;
    while start > 0 && newlines <= wanted {
        let step = TAIL_CHUNK.min(start);
        start -= step;
        file.seek(io::SeekFrom::Start(start)).await?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk).await?;
        newlines += chunk.iter().filter(|b| **b == b'\n').count();
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let text = crate::runtime::tail_lines(&String::from_utf8_lossy(&buf), Some(lines));
    Ok((text.into_bytes(), len))
}

/// `<log>.N`, the Nth rotated file of a log.
pub(super) fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates the log at `path` once it is larger than `max_bytes`, keeping `keep` rotated files.
///
/// The running process holds the file open in append mode, so the file cannot be renamed
/// under it: its content is copied to `.1` and the file truncated, and the process's next write
/// lands at the new end (what logrotate calls copytruncate). Output written between the copy and
/// the truncation is lost; with a check every resync that is a few lines at most. Returns
/// whether it rotated.
pub(super) fn rotate_if_large(path: &Path, max_bytes: u64, keep: usize) -> io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max_bytes {
        return Ok(false);
    }
    if keep == 0 {
        std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
        return Ok(true);
    }
    for n in (1..keep).rev() {
        match std::fs::rename(rotated(path, n), rotated(path, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::copy(path, rotated(path, 1))?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[tokio::test]
    async fn tails_come_from_the_end_of_a_log_larger_than_many_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..200_000 {
            writeln!(f, "line {i}").unwrap();
        }
        drop(f);
        let (tail, len) = read_tail(&path, Some(3)).await.unwrap();
        assert_eq!(
            String::from_utf8(tail).unwrap(),
            "line 199997\nline 199998\nline 199999\n"
        );
        assert_eq!(len, std::fs::metadata(&path).unwrap().len());
        let (none, _) = read_tail(&path, Some(0)).await.unwrap();
        assert!(none.is_empty());
        let (all, _) = read_tail(&path, None).await.unwrap();
        assert_eq!(all.len() as u64, len);
        // A last line without a newline, and a file shorter than the tail asked for.
        std::fs::write(&path, "one\ntwo\nthree").unwrap();
        let (tail, _) = read_tail(&path, Some(2)).await.unwrap();
        assert_eq!(String::from_utf8(tail).unwrap(), "two\nthree\n");
        let (tail, _) = read_tail(&path, Some(10)).await.unwrap();
        assert_eq!(String::from_utf8(tail).unwrap(), "one\ntwo\nthree\n");
        let (missing, len) = read_tail(&dir.path().join("none.log"), Some(5)).await.unwrap();
        assert!(missing.is_empty() && len == 0);
    }

    #[test]
    fn a_log_past_its_size_rotates_keeping_a_few_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        // Held open in append mode, as the instance holds it.
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for round in 0..5 {
            writer
                .write_all(format!("round {round}\n").repeat(20).as_bytes())
                .unwrap();
            assert!(rotate_if_large(&path, 100, 3).unwrap(), "round {round}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        }
        assert!(!rotate_if_large(&path, 100, 3).unwrap(), "an empty log stays");
        let read = |n| std::fs::read_to_string(rotated(&path, n)).unwrap();
        assert!(read(1).starts_with("round 4"), "{}", read(1));
        assert!(read(3).starts_with("round 2"));
        assert!(!rotated(&path, 4).exists(), "only three rotated files are kept");
        // The writer goes on at the start of the truncated file, not at its old offset.
        writer.write_all(b"after\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
