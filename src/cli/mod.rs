//! The `everynode` command line: `agent` runs a node; the other subcommands talk to a node's API.

pub mod agent;
pub mod client;
pub mod cluster;
pub mod daemonsets;
pub mod logs;
pub mod members;
pub mod nodes;
pub mod output;
pub mod pods;
pub mod validate;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::AgentFlags;
pub use output::OutputFormat;

/// Default API address the admin commands talk to.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:9495";

#[derive(Debug, Parser)]
#[command(
    name = "everynode",
    version,
    about = "Kubernetes DaemonSets without Kubernetes: one container per host, placed by gossip and Raft",
    propagate_version = true
)]
pub struct Cli {
    /// API of the node to talk to [default: http://127.0.0.1:9495].
    #[arg(long, global = true, env = "EVERYNODE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (the same command on every host).
    Agent(Box<AgentFlags>),
    /// List the cluster's members (same as `get nodes`).
    Members(OutputArgs),
    /// Show the control plane: leader, term, voters, commit index.
    Cluster(OutputArgs),
    /// List objects.
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Create or update DaemonSets from manifests (a file, a directory, or - for stdin).
    Apply {
        /// Manifest file, directory, or - for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        file: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one DaemonSet in detail: template, revisions, and where it runs and why.
    Describe {
        #[command(subcommand)]
        what: DescribeCommand,
    },
    /// Delete DaemonSets by name or by manifest.
    Delete {
        #[command(subcommand)]
        what: Option<DeleteCommand>,
        /// Delete the DaemonSets named in these manifests.
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        file: Option<String>,
    },
    /// Set (KEY=VALUE) or remove (KEY-) labels on a node, over its own --label flags.
    Label {
        #[command(subcommand)]
        what: NodeChange,
    },
    /// Add (KEY[=VALUE]:EFFECT) or remove (KEY:EFFECT-) taints on a node, over its own --taint flags.
    Taint {
        #[command(subcommand)]
        what: NodeChange,
    },
    /// Stop every DaemonSet instance on a node (grace periods honoured) and keep it free until `uncordon`.
    Drain { node: String },
    /// Let DaemonSets run on a drained node again.
    Uncordon { node: String },
    /// Take the node --server points at out of the cluster for good: stop its instances (grace
    /// periods honoured), give its Raft seat away, forget it, then stop its agent (exit 0).
    Leave(OutputArgs),
    /// Forget a dead node: its Raft seat, its overrides, its place in DaemonSet counts.
    Remove {
        #[command(subcommand)]
        what: RemoveCommand,
    },
    /// Print the output of a DaemonSet's instance on one node (read through --server).
    Logs {
        daemonset: String,
        /// The node whose instance to read.
        #[arg(long, value_name = "NODE")]
        node: String,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Keep printing what the instance writes, until it stops or Ctrl-C.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Check manifests offline: names, revision hashes, warnings and errors (exit 1 when invalid).
    Validate {
        /// Manifest file, directory, or - for standard input.
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
        file: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List the cluster's members.
    #[command(alias = "node", alias = "no")]
    Nodes(OutputArgs),
    /// List DaemonSets, or show one.
    #[command(name = "daemonsets", alias = "daemonset", alias = "ds")]
    DaemonSets {
        name: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List DaemonSet instances: one row per DaemonSet and node.
    #[command(alias = "pod", alias = "po")]
    Pods {
        /// Only instances on this node.
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Only DaemonSets whose template labels match (KEY=VALUE[,KEY=VALUE...]).
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DescribeCommand {
    /// Describe a DaemonSet.
    #[command(name = "daemonset", alias = "daemonsets", alias = "ds")]
    DaemonSet { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete a DaemonSet by name.
    #[command(name = "daemonset", alias = "daemonsets", alias = "ds")]
    DaemonSet { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RemoveCommand {
    /// Remove a dead node (refused while it runs: use `everynode leave` on it).
    #[command(alias = "nodes", alias = "no")]
    Node {
        node: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeChange {
    /// Change a node.
    #[command(alias = "nodes", alias = "no")]
    Node {
        node: String,
        /// Changes, e.g. zone=a tier- (labels) or gpu=yes:NoSchedule maint:NoExecute- (taints).
        changes: Vec<String>,
    },
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs the parsed command; errors carry their exit code (see [`crate::error::exit_code`]).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let server = cli.server.unwrap_or_else(|| DEFAULT_SERVER.to_string());
    match cli.command {
        Command::Agent(flags) => agent::run(*flags),
        Command::Members(out)
        | Command::Get {
            what: GetCommand::Nodes(out),
        } => block_on(members::run(&server, out.output)),
        Command::Get {
            what: GetCommand::DaemonSets { name, out },
        } => block_on(daemonsets::get(&server, name.as_deref(), out.output)),
        Command::Cluster(out) => block_on(cluster::run(&server, out.output)),
        Command::Get {
            what: GetCommand::Pods { node, selector, out },
        } => block_on(pods::get(
            &server,
            node.as_deref(),
            selector.as_deref(),
            out.output,
        )),
        Command::Drain { node } => block_on(nodes::drain(&server, &node, true)),
        Command::Uncordon { node } => block_on(nodes::drain(&server, &node, false)),
        Command::Leave(out) => block_on(nodes::leave(&server, out.output)),
        Command::Remove {
            what: RemoveCommand::Node { node, out },
        } => block_on(nodes::remove(&server, &node, out.output)),
        Command::Logs {
            daemonset,
            node,
            tail,
            follow,
            out,
        } => block_on(logs::run(&server, &daemonset, &node, tail, follow, out.output)),
        Command::Apply { file, out } => block_on(daemonsets::apply(&server, &file, out.output)),
        Command::Describe {
            what: DescribeCommand::DaemonSet { name },
        } => block_on(daemonsets::describe(&server, &name)),
        Command::Delete { what, file } => {
            let name = what.map(|DeleteCommand::DaemonSet { name }| name);
            block_on(daemonsets::delete(&server, name.as_deref(), file.as_deref()))
        }
        Command::Label {
            what: NodeChange::Node { node, changes },
        } => block_on(nodes::label(&server, &node, &changes)),
        Command::Taint {
            what: NodeChange::Node { node, changes },
        } => block_on(nodes::taint(&server, &node, &changes)),
        Command::Validate { file, out } => {
            let stdout = std::io::stdout();
            let valid = validate::run(&file, out.output, &mut stdout.lock())?;
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Admin commands are short-lived; a current-thread runtime keeps them light.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
