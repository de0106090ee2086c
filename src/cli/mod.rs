//! The `everynode` command line: `agent` runs a node; the other subcommands talk to a node's API.

pub mod agent;
pub mod client;
pub mod members;
pub mod output;

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
    /// List objects.
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// List the cluster's members.
    #[command(alias = "node", alias = "no")]
    Nodes(OutputArgs),
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
    }
}

/// Admin commands are short-lived; a current-thread runtime keeps them light.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(f: F) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}
