//! `everynode cluster`: the Raft group as one node sees it (leader, term, voters, commit index).

use std::process::ExitCode;

use super::client::{Client, Target};
use super::output::OutputFormat;
use crate::api::cluster::ClusterView;

pub async fn run(server: &Target, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let view: ClusterView = Client::new(server)?.get("/v1/cluster").await?;
    match format {
        OutputFormat::Json | OutputFormat::Yaml => super::output::print_structured(&view, format)?,
        OutputFormat::Table | OutputFormat::Wide => print!("{}", render(&view)),
    }
    Ok(ExitCode::SUCCESS)
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub fn render(v: &ClusterView) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "<none>".to_string()
        } else {
            names.join(",")
        }
    };
    format!(
        "Leader:        {}\nTerm:          {}\nVoters:        {}\nLearners:      {}\nCommit index:  {}\nStore version: {}\nAsked node:    {} ({})\n",
        v.leader.clone().unwrap_or_else(|| "<none: no majority, or not formed yet>".into()),
        or_dash(v.term),
        list(&v.voters),
        list(&v.learners),
        or_dash(v.commit_index),
        v.store_version,
        v.node,
        v.role,
    )
}
