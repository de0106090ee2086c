//! Rolling updates: the leader grants each node the new revision in waves that keep the fleet within its `maxUnavailable`/`maxSurge` budget.
//!
//! # Layout
//! - `state`: what the store keeps per DaemonSet (grants, baseline, held-back nodes, pause, failure).
//! - `planner`: the pure wave planner and its filter hook.
//! - `driver`: the leader's loop that feeds the planner and commits its steps through Raft.
//! - `invariant`: a checker that samples node statuses and fails if a budget was exceeded.

pub mod driver;
pub mod invariant;
pub mod planner;
pub mod state;

#[cfg(test)]
mod returning;

pub use planner::{plan, Decision, NodeView, PlanInput, Progress, WaveFilter};
pub use state::{Failure, Grant, Held, RolloutState};
