//! `get pods`: every DaemonSet instance in the cluster, one row per (DaemonSet, node), from the statuses nodes gossip.

use std::collections::BTreeMap;
use std::process::ExitCode;

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::api::pods::PodView;
use crate::error::InputError;

/// Parses `-l k=v,k2=v2` (equality only, like the simplest kubectl selectors).
fn parse_selector(selector: &str) -> Result<BTreeMap<String, String>, InputError> {
    selector
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    InputError::new(format!(
                        "-l {selector}: `{pair}` is not KEY=VALUE; only equality selectors such as app=agent are supported"
                    ))
                })
        })
        .collect()
}

pub async fn get(
    server: &Target,
    node: Option<&str>,
    selector: Option<&str>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let wanted = selector.map(parse_selector).transpose()?.unwrap_or_default();
    let pods: Vec<PodView> = Client::new(server)?.get("/v1/pods").await?;
    let pods: Vec<PodView> = pods
        .into_iter()
        .filter(|p| node.is_none_or(|n| p.node == n))
        .filter(|p| wanted.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .collect();
    match format {
        OutputFormat::Json | OutputFormat::Yaml => super::output::print_structured(&pods, format)?,
        OutputFormat::Table | OutputFormat::Wide => {
            if pods.is_empty() {
                eprintln!("No pods found.");
            } else {
                print!("{}", render_table(&pods, format == OutputFormat::Wide));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn render_table(pods: &[PodView], wide: bool) -> String {
    let mut header = vec![
        "DAEMONSET",
        "NODE",
        "REVISION",
        "STATE",
        "READY",
        "RESTARTS",
        "AGE",
    ];
    if wide {
        header.extend(["REVISION-HASH", "LAST-ERROR"]);
    }
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let mut row = vec![
                p.daemonset.clone(),
                p.node.clone(),
                p.revision.map(|r| r.to_string()).unwrap_or_else(|| "?".into()),
                p.state.clone(),
                if p.ready { "1/1" } else { "0/1" }.to_string(),
                p.restarts.to_string(),
                output::age(p.started_at),
            ];
            if wide {
                row.extend([
                    p.revision_hash.clone(),
                    p.last_error.clone().unwrap_or_else(|| "<none>".into()),
                ]);
            }
            row
        })
        .collect();
    output::table(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_equality_pairs() {
        let s = parse_selector("app=agent, tier=node").unwrap();
        assert_eq!(s["app"], "agent");
        assert_eq!(s["tier"], "node");
        let e = parse_selector("app").unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }
}
