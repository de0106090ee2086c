//! everynode: Kubernetes DaemonSets without Kubernetes.
//!
//! Every host runs the same binary; hosts find each other by gossip and each converges to one
//! running instance of every DaemonSet that selects it.
//!
//! # Layout
//! - [`agent`]: the node agent: one actor per DaemonSet keeps its instances converged and reports status.
//! - [`config`]: node settings from a TOML file, `EVERYNODE_*` variables and flags, validated.
//! - [`control`]: the Raft control plane; so far the rules for forming the cluster and choosing voters.
//! - [`error`]: the bad-input error type that the binary maps to exit code 2.
//! - [`membership`]: the chitchat gossip wrapper: who is alive, and each node's published keys.
//! - [`rollout`]: rolling updates: the leader's wave planner and the loop that commits its grants.
//! - [`runtime`]: container runtimes: Docker, child processes, and an in-memory one for tests.
//! - [`security`]: the cluster secret and its derived keys, node-to-node HTTP signatures, API tokens, TLS.
//! - [`node`]: wires one running node together (data dir, gossip, API) and shuts it down.
//! - [`api`]: the HTTP JSON API every node serves, with health and Prometheus metrics.
//! - [`cli`]: the `everynode` command line: the agent and the admin commands.
//! - [`scheduling`]: pure placement rules with Kubernetes semantics (labels, taints).

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod error;
pub mod membership;
pub mod node;
pub mod rollout;
pub mod runtime;
pub mod scheduling;
pub mod security;
pub mod spec;
