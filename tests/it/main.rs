//! The integration tests, linked once: one module per area, sharing `support`.
//!
//! Run one area with a module filter, e.g. `cargo test --test it faults::` for the fault
//! scenarios alone, or `cargo test --test it -- --skip faults::` for everything else.
//!
//! # Layout
//! - `support`: the harness (agents on loopback, condition waits, Docker images, network
//!   namespaces, rollout sampling, a manifest builder) and the machine guard below.
//! - Offline: `manifests`, `examples`, `placement`, `properties`, `cli_errors`; `bundles`
//!   (the corpus of real install bundles, offline and applied).
//! - In process: `membership_sim`, `security_gossip`, `raft_cluster`, `http_network`,
//!   `bootstrap_races`.
//! - Runtimes: `runtime_contract` (one behaviour suite run against every runtime),
//!   `runtime_process`, `runtime_docker` (what is specific to each).
//! - Real agents on loopback: `e2e_membership`, `e2e_control`, `e2e_agent`, `e2e_init`,
//!   `e2e_rollout`, `security_api`; against the Docker engine: `e2e_docker_agent`, `e2e_docker_rollout`.
//! - Hosts in network namespaces: `faults`.

mod support;

mod bootstrap_races;
mod bundles;
mod cli_errors;
mod e2e_agent;
mod e2e_control;
mod e2e_docker_agent;
mod e2e_docker_bundle;
mod e2e_docker_rollout;
mod e2e_init;
mod e2e_membership;
mod e2e_rollout;
mod examples;
mod faults;
mod http_network;
mod manifests;
mod membership_sim;
mod placement;
mod properties;
mod raft_cluster;
mod runtime_contract;
mod runtime_docker;
mod runtime_process;
mod security_api;
mod security_gossip;
