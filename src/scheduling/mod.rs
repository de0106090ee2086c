//! Pure placement: which nodes a DaemonSet runs on, with Kubernetes' semantics.
//!
//! # Layout
//! - `labels`: label key/value syntax and the `KEY=VALUE` flag form.
//! - `taint`: node taints and the `KEY[=VALUE]:EFFECT` syntax.
//! - `node`: a node as placement sees it, with the builtin `kubernetes.io/*` labels.
//! - `selector`: node selector requirements and required node affinity.
//! - `toleration`: taints against tolerations, and NoExecute eviction delays.
//! - `placement`: the decision for one DaemonSet and one node, with reasons.

pub mod labels;
pub mod node;
pub mod placement;
pub mod selector;
pub mod taint;
pub mod toleration;

pub use node::NodeInfo;
pub use placement::{should_run, Placement, Reason};
pub use taint::{Taint, TaintEffect};
pub use toleration::Eviction;
