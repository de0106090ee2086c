//! The `everynode` command line: `agent` runs a node; the other subcommands talk to a node's API.

pub mod agent;
pub mod bundles;
pub mod client;
pub mod cluster;
pub mod configs;
pub mod daemonsets;
pub mod logs;
pub mod members;
pub mod nodes;
pub mod output;
pub mod pods;
pub mod rollout;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::AgentFlags;
pub use output::OutputFormat;

/// Default API address the admin commands talk to (with `http://`, or `https://` given `--ca-cert`).
pub const DEFAULT_SERVER_ADDR: &str = "127.0.0.1:9495";

#[derive(Debug, Parser)]
#[command(
    name = "everynode",
    version,
    about = "Kubernetes DaemonSets without Kubernetes: one container per host, placed by gossip and Raft",
    propagate_version = true
)]
pub struct Cli {
    /// API of the node to talk to [default: http://127.0.0.1:9495, https with --ca-cert].
    #[arg(long, global = true, env = "EVERYNODE_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// API token [default: DATA_DIR/admin-token, else DATA_DIR/readonly-token, of this host's node].
    #[arg(
        long,
        global = true,
        env = "EVERYNODE_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The node's data dir: `agent` keeps its state there, admin commands read the token there [default: /var/lib/everynode as root, else ~/.local/share/everynode].
    #[arg(long, global = true, env = "EVERYNODE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// CA certificate (PEM) that signed the API's TLS certificate; admin commands then use https by default, and an agent with --tls-cert trusts it for other nodes [default for an agent: its --tls-cert].
    #[arg(long, global = true, env = "EVERYNODE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
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
    /// Create or update DaemonSets, ConfigMaps and Secrets from manifests (a file, a directory,
    /// or - for stdin); other kinds of a bundle (ServiceAccounts, RBAC, CRDs...) are skipped.
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
    /// Delete DaemonSets, ConfigMaps and Secrets by name or by manifest.
    Delete {
        #[command(subcommand)]
        what: Option<DeleteCommand>,
        /// Delete the DaemonSets, ConfigMaps and Secrets of these manifests.
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
    /// Follow and steer rolling updates: status, history, undo, pause, resume, restart.
    Rollout {
        #[command(subcommand)]
        what: RolloutCommand,
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
    /// List ConfigMaps, or show one.
    #[command(name = "configmaps", alias = "configmap", alias = "cm")]
    ConfigMaps {
        name: Option<String>,
        #[command(flatten)]
        ns: NamespaceArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List Secrets (keys and sizes; values only with -o yaml|json and the admin token).
    #[command(name = "secrets", alias = "secret")]
    Secrets {
        name: Option<String>,
        #[command(flatten)]
        ns: NamespaceArgs,
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
    /// Describe a ConfigMap: its keys and values.
    #[command(name = "configmap", alias = "configmaps", alias = "cm")]
    ConfigMap {
        name: String,
        #[command(flatten)]
        ns: NamespaceArgs,
    },
    /// Describe a Secret: its type, keys and sizes (never its values).
    #[command(name = "secret", alias = "secrets")]
    Secret {
        name: String,
        #[command(flatten)]
        ns: NamespaceArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Delete a DaemonSet by name.
    #[command(name = "daemonset", alias = "daemonsets", alias = "ds")]
    DaemonSet { name: String },
    /// Delete a ConfigMap by name.
    #[command(name = "configmap", alias = "configmaps", alias = "cm")]
    ConfigMap {
        name: String,
        #[command(flatten)]
        ns: NamespaceArgs,
    },
    /// Delete a Secret by name.
    #[command(name = "secret", alias = "secrets")]
    Secret {
        name: String,
        #[command(flatten)]
        ns: NamespaceArgs,
    },
    /// Delete a DaemonSet's instance on one node: it is replaced at the current revision
    /// (with the OnDelete strategy, this is how a node moves to a new revision).
    #[command(alias = "pods", alias = "po")]
    Pod {
        daemonset: String,
        #[arg(long, value_name = "NODE")]
        node: String,
    },
}

/// The DaemonSet a rollout command acts on: `ds NAME` or `ds/NAME`.
#[derive(Debug, Clone, Args)]
pub struct RolloutTarget {
    /// `ds` (or `ds/NAME`).
    #[arg(value_name = "ds")]
    pub kind: String,
    pub name: Option<String>,
}

impl RolloutTarget {
    fn resolve(&self) -> Result<String, crate::error::InputError> {
        rollout::parse_target(&self.kind, self.name.as_deref())
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow the rollout until it completes (exit 0), fails, is paused or times out (exit 1).
    Status {
        #[command(flatten)]
        target: RolloutTarget,
        /// Give up after this long (90, 90s, 5m, 1h); default: wait for ever.
        #[arg(long, value_name = "DURATION")]
        timeout: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List the revisions: number, hash, images, change cause, time.
    History {
        #[command(flatten)]
        target: RolloutTarget,
        /// Show this revision's pod template.
        #[arg(long, value_name = "N")]
        revision: Option<u64>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Return to the previous revision (or --to-revision N), rolled out under the same budget.
    Undo {
        #[command(flatten)]
        target: RolloutTarget,
        #[arg(long, value_name = "N")]
        to_revision: Option<u64>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Stop granting the new revision to more nodes.
    Pause {
        #[command(flatten)]
        target: RolloutTarget,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Continue a paused or failed rollout.
    Resume {
        #[command(flatten)]
        target: RolloutTarget,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Replace every instance in waves: a new revision with a restartedAt annotation.
    Restart {
        #[command(flatten)]
        target: RolloutTarget,
        #[command(flatten)]
        out: OutputArgs,
    },
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

/// `-n NAMESPACE` or `-A`, as kubectl takes them.
#[derive(Debug, Clone, Args)]
pub struct NamespaceArgs {
    /// The namespace [default: default].
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "NAMESPACE",
        conflicts_with = "all_namespaces"
    )]
    pub namespace: Option<String>,
    /// Every namespace (lists only).
    #[arg(short = 'A', long = "all-namespaces")]
    pub all_namespaces: bool,
}

impl NamespaceArgs {
    fn scope(self, name: Option<&str>) -> Result<configs::Scope, crate::error::InputError> {
        if self.all_namespaces && name.is_some() {
            return Err(crate::error::InputError::new(
                "a resource cannot be retrieved by name across all namespaces: drop -A, or give -n NAMESPACE",
            ));
        }
        Ok(configs::Scope::new(self.namespace, self.all_namespaces))
    }
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Runs the parsed command; errors carry their exit code (see [`crate::error::exit_code`]).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Agent(mut flags) = cli.command {
        flags.data_dir = cli.data_dir;
        flags.ca_cert = cli.ca_cert;
        return agent::run(*flags);
    }
    let roots = match &cli.ca_cert {
        Some(path) => Some(crate::security::tls::ca_certificates(path, "--ca-cert")?),
        None => None,
    };
    let server = &client::Target {
        server: cli.server.unwrap_or_else(|| {
            let scheme = if roots.is_some() { "https" } else { "http" };
            format!("{scheme}://{DEFAULT_SERVER_ADDR}")
        }),
        token: client::TokenSource::resolve(cli.token, cli.data_dir.as_deref()),
        roots,
    };
    match cli.command {
        Command::Agent(_) => unreachable!("handled above"),
        Command::Members(out)
        | Command::Get {
            what: GetCommand::Nodes(out),
        } => block_on(members::run(server, out.output)),
        Command::Get {
            what: GetCommand::DaemonSets { name, out },
        } => block_on(daemonsets::get(server, name.as_deref(), out.output)),
        Command::Cluster(out) => block_on(cluster::run(server, out.output)),
        Command::Get {
            what: GetCommand::Pods { node, selector, out },
        } => block_on(pods::get(
            server,
            node.as_deref(),
            selector.as_deref(),
            out.output,
        )),
        Command::Drain { node } => block_on(nodes::drain(server, &node, true)),
        Command::Uncordon { node } => block_on(nodes::drain(server, &node, false)),
        Command::Leave(out) => block_on(nodes::leave(server, out.output)),
        Command::Remove {
            what: RemoveCommand::Node { node, out },
        } => block_on(nodes::remove(server, &node, out.output)),
        Command::Logs {
            daemonset,
            node,
            tail,
            follow,
            out,
        } => block_on(logs::run(server, &daemonset, &node, tail, follow, out.output)),
        Command::Get {
            what: GetCommand::ConfigMaps { name, ns, out },
        } => {
            let scope = ns.scope(name.as_deref())?;
            block_on(configs::get_config_maps(
                server,
                name.as_deref(),
                &scope,
                out.output,
            ))
        }
        Command::Get {
            what: GetCommand::Secrets { name, ns, out },
        } => {
            let scope = ns.scope(name.as_deref())?;
            block_on(configs::get_secrets(server, name.as_deref(), &scope, out.output))
        }
        Command::Apply { file, out } => block_on(bundles::apply(server, &file, out.output)),
        Command::Describe {
            what: DescribeCommand::DaemonSet { name },
        } => block_on(daemonsets::describe(server, &name)),
        Command::Describe {
            what: DescribeCommand::ConfigMap { name, ns },
        } => block_on(configs::describe_config_map(
            server,
            &name,
            &ns.scope(Some(&name))?,
        )),
        Command::Describe {
            what: DescribeCommand::Secret { name, ns },
        } => block_on(configs::describe_secret(server, &name, &ns.scope(Some(&name))?)),
        Command::Delete {
            what: Some(DeleteCommand::ConfigMap { name, ns }),
            file: None,
        } => block_on(configs::delete(
            server,
            crate::control::configs::ConfigKind::ConfigMap,
            &name,
            &ns.scope(Some(&name))?,
        )),
        Command::Delete {
            what: Some(DeleteCommand::Secret { name, ns }),
            file: None,
        } => block_on(configs::delete(
            server,
            crate::control::configs::ConfigKind::Secret,
            &name,
            &ns.scope(Some(&name))?,
        )),
        Command::Delete {
            what: Some(DeleteCommand::Pod { daemonset, node }),
            file: None,
        } => block_on(rollout::delete_pod(server, &daemonset, &node)),
        Command::Delete {
            what: Some(DeleteCommand::DaemonSet { name }),
            file: None,
        } => block_on(daemonsets::delete(server, &name)),
        Command::Delete {
            what: None,
            file: Some(file),
        } => block_on(bundles::delete(server, &file)),
        Command::Delete { .. } => Err(crate::error::InputError::new(
            "give either `delete ds|cm|secret NAME` or `delete -f FILE`",
        )
        .into()),
        Command::Rollout { what } => run_rollout(server, what),
        Command::Label {
            what: NodeChange::Node { node, changes },
        } => block_on(nodes::label(server, &node, &changes)),
        Command::Taint {
            what: NodeChange::Node { node, changes },
        } => block_on(nodes::taint(server, &node, &changes)),
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

fn run_rollout(server: &client::Target, what: RolloutCommand) -> anyhow::Result<ExitCode> {
    match what {
        RolloutCommand::Status { target, timeout, out } => {
            let name = target.resolve()?;
            let timeout = timeout.as_deref().map(rollout::parse_timeout).transpose()?;
            block_on(rollout::status(server, &name, timeout, out.output))
        }
        RolloutCommand::History {
            target,
            revision,
            out,
        } => block_on(rollout::history(server, &target.resolve()?, revision, out.output)),
        RolloutCommand::Undo {
            target,
            to_revision,
            out,
        } => block_on(rollout::act(
            server,
            &target.resolve()?,
            "undo",
            to_revision,
            out.output,
        )),
        RolloutCommand::Pause { target, out } => block_on(rollout::act(
            server,
            &target.resolve()?,
            "pause",
            None,
            out.output,
        )),
        RolloutCommand::Resume { target, out } => block_on(rollout::act(
            server,
            &target.resolve()?,
            "resume",
            None,
            out.output,
        )),
        RolloutCommand::Restart { target, out } => block_on(rollout::act(
            server,
            &target.resolve()?,
            "restart",
            None,
            out.output,
        )),
    }
}

/// Admin commands are short-lived; a current-thread runtime keeps them light.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
