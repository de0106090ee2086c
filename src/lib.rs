//! everynode: Kubernetes DaemonSets without Kubernetes.
//!
//! Every host runs the same binary; hosts find each other by gossip and each converges to one
//! running instance of every DaemonSet that selects it.
//!
//! # One apply, end to end
//! 1. [`cli`] (`everynode apply -f`) reads the manifests with [`spec`] (parse, validate, default,
//!    revision hash) and posts them to any node's [`api`] (`api::daemonsets::apply`).
//! 2. That node's `control::writer` commits the write through the Raft leader (forwarding it
//!    when this node does not lead); `control::state_machine` applies it to the replicated
//!    `control::store` (DaemonSets, revisions, node overrides, rollout grants) in redb.
//! 3. `control::distribute` gossips the store's version through [`membership`] (chitchat), and
//!    every node, voter or not, fetches the new copy over HTTP into its `control::replica`.
//! 4. On the leader, [`rollout`] plans the next wave (`rollout::planner`, pure) and commits the
//!    grants that let nodes move to the new revision within `maxUnavailable`/`maxSurge`.
//! 5. On every node, [`agent`]'s `NodeAgent` starts one `DaemonSetActor` per DaemonSet that
//!    [`scheduling`] places there; `agent::desired` turns the granted revision into a
//!    `runtime::InstanceSpec`, and `agent::reconcile` (pure) decides what to create, adopt,
//!    replace or remove through the node's [`runtime`] (Docker or processes).
//! 6. The actor publishes the instance's status as a gossip key (`agent::status`); the leader's
//!    planner reads it to open the next wave, and `get ds`, `get pods` and `rollout status`
//!    aggregate it on whichever node they ask.
//!
//! # Layout
//! - [`node`]: starts one node in the order above (data dir, secret, gossip, Raft, API, agent)
//!   and shuts it down.
//! - [`config`]: node settings from a TOML file, `EVERYNODE_*` variables and flags, validated.
//! - [`spec`]: the `apps/v1` DaemonSet model, manifest loading and validation, revision hashes.
//! - [`scheduling`]: pure placement rules with Kubernetes semantics (selectors, affinity, taints).
//! - [`membership`]: the chitchat gossip wrapper: who is alive, and each node's published keys.
//! - [`control`]: the Raft control plane: forming the cluster, voters, the store, writes, and the
//!   copy every node keeps.
//! - [`rollout`]: rolling updates: the leader's wave planner and the loop that commits its grants.
//! - [`agent`]: the node agent: one actor per DaemonSet keeps its instances converged and reports
//!   status.
//! - [`runtime`]: container runtimes: the trait, Docker, child processes, and an in-memory fake.
//! - [`security`]: the cluster secret and its derived keys, node-to-node HTTP signatures, API
//!   tokens, TLS.
//! - [`api`]: the HTTP JSON API every node serves, with health and Prometheus metrics.
//! - [`cli`]: the `everynode` command line: the agent and the admin commands.
//! - [`error`]: the bad-input error type that the binary maps to exit code 2.

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
