//! `everynode members` / `get nodes`: the cluster's members as a table or JSON.

use std::process::ExitCode;

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::membership::Member;

pub async fn run(server: &Target, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let members: Vec<Member> = Client::new(server)?.get("/v1/members").await?;
    match format {
        OutputFormat::Json | OutputFormat::Yaml => output::print_structured(&members, format)?,
        OutputFormat::Table | OutputFormat::Wide => print!("{}", render_table(&members)),
    }
    Ok(ExitCode::SUCCESS)
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

pub fn render_table(members: &[Member]) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let taints: Vec<String> = m.taints.iter().map(|t| t.to_string()).collect();
            vec![
                m.name.clone(),
                m.state.to_string(),
                m.gossip_addr
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or_else(|| m.gossip_addr.clone()),
                dash(&m.role),
                dash(&m.runtime),
                dash(&labels.join(",")),
                dash(&taints.join(",")),
                output::age(m.started_at),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME", "STATE", "ADDRESS", "ROLE", "RUNTIME", "LABELS", "TAINTS", "AGE",
        ],
        &rows,
    )
}
