//! The control plane: one Raft group whose leader owns the DaemonSets; here, the pure rules for forming it and choosing voters.

pub mod bootstrap;
pub mod distribute;
pub mod replica;
pub mod voters;
