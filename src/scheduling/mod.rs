//! Pure placement rules with Kubernetes semantics: labels, taints and tolerations.

pub mod labels;
pub mod taint;

pub use taint::{Taint, TaintEffect};
