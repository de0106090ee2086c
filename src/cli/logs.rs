//! `everynode logs DAEMONSET --node NODE [--tail N] [--follow]`: an instance's output, read through whichever node `--server` names.

use std::io::Write;
use std::process::ExitCode;

use super::client::{Client, Target};
use super::output::OutputFormat;
use crate::api::logs::LogsView;
use crate::error::InputError;

pub async fn run(
    server: &Target,
    daemonset: &str,
    node: &str,
    tail: Option<usize>,
    follow: bool,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let mut path = format!("/v1/logs/{daemonset}?node={node}");
    if let Some(n) = tail {
        path.push_str(&format!("&tail={n}"));
    }
    if !follow {
        let view: LogsView = Client::new(server)?.get(&path).await?;
        match format {
            OutputFormat::Json | OutputFormat::Yaml => super::output::print_structured(&view, format)?,
            OutputFormat::Table | OutputFormat::Wide => print!("{}", view.logs),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if matches!(format, OutputFormat::Json | OutputFormat::Yaml) {
        return Err(InputError::new(
            "--follow streams the output as it is written; drop -o, which only applies to a one-off read",
        )
        .into());
    }
    path.push_str("&follow=true");
    // Runs until the instance stops or the user presses Ctrl-C (which ends the process).
    let mut resp = Client::with_timeout(server, None)?.open(&path).await?;
    let mut stdout = std::io::stdout().lock();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| anyhow::anyhow!("the log stream of {daemonset} on node {node} broke off: {e}"))?
    {
        // A closed pipe (`| head`) is the reader saying it has seen enough.
        if stdout.write_all(&chunk).and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
