//! `everynode agent`: resolve settings, set up logging, and run the node inside an actix system.

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::config::{AgentFlags, LogFormat, NodeConfig};

pub fn run(flags: AgentFlags) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::resolve(&flags)?;
    init_logging(config.log_format);
    // actix actors and tokio I/O (HTTP, Docker) share one multi-thread runtime.
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("everynode")
            .build()
            .expect("building the tokio runtime")
    });
    system.block_on(crate::node::run(config, crate::node::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("EVERYNODE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        // openraft logs every election step at info; its warnings are what operators need.
        .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
