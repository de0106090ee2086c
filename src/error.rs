//! Bad input: the one error kind the binary reports with exit code 2, before anything starts.

use std::fmt;

/// A mistake in what the user gave us (a flag, a file, an address), as opposed to a failure
/// of the system. The message already says what was wrong, where, and what to do.
#[derive(Debug)]
pub struct InputError(pub String);

impl InputError {
    pub fn new(msg: impl Into<String>) -> Self {
        InputError(msg.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Exit code for bad input (flags, files, addresses): nothing was started or changed.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code for any other failure.
pub const EXIT_FAILURE: u8 = 1;

/// Maps an error chain to the process exit code: 2 when any cause is an [`InputError`].
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|e| e.is::<InputError>()) {
        EXIT_BAD_INPUT
    } else {
        EXIT_FAILURE
    }
}
