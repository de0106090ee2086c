//! `everynode logs DAEMONSET --node NODE`: an instance's output, read through the API of the node that runs it.

use std::process::ExitCode;

use super::client::{Client, Target};
use crate::api::control::LogsView;
use crate::error::InputError;
use crate::membership::Member;

pub async fn run(
    server: &Target,
    daemonset: &str,
    node: &str,
    tail: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let members: Vec<Member> = Client::new(server)?.get("/v1/members").await?;
    let member = members.iter().find(|m| m.name == node).ok_or_else(|| {
        InputError::new(format!(
            "node {node} not found; `everynode get nodes` lists the members"
        ))
    })?;
    if member.api_addr.is_empty() {
        anyhow::bail!("node {node} has not published its API address yet; try again in a moment");
    }
    let path = match tail {
        Some(n) => format!("/v1/local/logs/{daemonset}?tail={n}"),
        None => format!("/v1/local/logs/{daemonset}"),
    };
    let view: LogsView = Client::new(&server.with_node(&member.api_addr))?
        .get(&path)
        .await?;
    print!("{}", view.logs);
    Ok(ExitCode::SUCCESS)
}
