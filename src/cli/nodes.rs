//! `label node` and `taint node`: node overrides committed through the leader, in kubectl's syntax.

use std::process::ExitCode;

use anyhow::bail;

use super::client::{Client, Target};
use super::output::OutputFormat;
use crate::api::cluster::ClusterView;
use crate::api::leave::{LeaveView, RemoveView, Seat};
use crate::api::nodes::{LabelRequest, TaintRequest};
use crate::error::InputError;
use crate::membership::MemberState;
use crate::scheduling::labels::parse_label;
use crate::scheduling::{Taint, TaintEffect};

/// `KEY=VALUE` sets, `KEY-` removes.
pub fn parse_label_changes(changes: &[String]) -> Result<LabelRequest, InputError> {
    let mut req = LabelRequest::default();
    for c in changes {
        if let Some(key) = c.strip_suffix('-') {
            crate::scheduling::labels::validate_label_key(key).map_err(InputError::new)?;
            req.remove.insert(key.to_string());
        } else {
            let (k, v) =
                parse_label(c).map_err(|e| InputError::new(format!("{e} (or KEY- to remove it)")))?;
            req.set.insert(k, v);
        }
    }
    Ok(req)
}

/// `KEY[=VALUE]:EFFECT` adds, `KEY:EFFECT-` or `KEY-` removes.
pub fn parse_taint_changes(changes: &[String]) -> Result<TaintRequest, InputError> {
    let mut req = TaintRequest::default();
    for c in changes {
        if let Some(spec) = c.strip_suffix('-') {
            let (key, effect) = match spec.rsplit_once(':') {
                Some((k, e)) => (k, Some(e.parse::<TaintEffect>().map_err(InputError::new)?)),
                None => (spec, None),
            };
            let key = key.split_once('=').map(|(k, _)| k).unwrap_or(key);
            crate::scheduling::labels::validate_label_key(key).map_err(InputError::new)?;
            req.remove.push((key.to_string(), effect));
        } else {
            req.add.push(c.parse::<Taint>().map_err(InputError::new)?);
        }
    }
    Ok(req)
}

pub async fn label(server: &Target, node: &str, changes: &[String]) -> anyhow::Result<ExitCode> {
    if changes.is_empty() {
        bail!(InputError::new("give at least one KEY=VALUE or KEY- change"));
    }
    let req = parse_label_changes(changes)?;
    Client::new(server)?
        .post::<_, Option<()>>(&format!("/v1/nodes/{node}/labels"), &req)
        .await?;
    println!("node/{node} labeled");
    Ok(ExitCode::SUCCESS)
}

pub async fn taint(server: &Target, node: &str, changes: &[String]) -> anyhow::Result<ExitCode> {
    if changes.is_empty() {
        bail!(InputError::new(
            "give at least one KEY[=VALUE]:EFFECT or KEY:EFFECT- change"
        ));
    }
    let req = parse_taint_changes(changes)?;
    Client::new(server)?
        .post::<_, Option<()>>(&format!("/v1/nodes/{node}/taints"), &req)
        .await?;
    println!(
        "node/{node} {}",
        if req.add.is_empty() {
            "untainted"
        } else {
            "tainted"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// How long `drain` waits for the node's instances to stop before giving up on waiting.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// `drain NODE` (stop every instance there and keep DaemonSets off it, waiting until they
/// are gone) and `uncordon NODE`.
pub async fn drain(server: &Target, node: &str, drained: bool) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    client
        .post::<_, Option<()>>(
            &format!("/v1/nodes/{node}/drain"),
            &crate::api::nodes::DrainRequest { drained },
        )
        .await?;
    if !drained {
        println!("node/{node} uncordoned");
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = std::time::Instant::now() + DRAIN_WAIT;
    loop {
        let pods: Vec<crate::api::pods::PodView> = client.get("/v1/pods").await?;
        let left: Vec<String> = pods
            .into_iter()
            .filter(|p| p.node == node)
            .map(|p| format!("{} ({})", p.daemonset, p.state))
            .collect();
        if left.is_empty() {
            println!("node/{node} drained");
            return Ok(ExitCode::SUCCESS);
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "node/{node} is drained but still reports {}; `everynode get pods --node {node}` shows them",
                left.join(", ")
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `leave`: the node behind `server` stops its instances, gives its Raft seat away, is
/// forgotten by the cluster, and its agent exits.
pub async fn leave(server: &Target, format: OutputFormat) -> anyhow::Result<ExitCode> {
    // Stopping instances honours their grace periods, which may be long: no request timeout.
    let view: LeaveView = Client::with_timeout(server, None)?
        .post("/v1/local/leave", &serde_json::json!({}))
        .await?;
    match format {
        OutputFormat::Json | OutputFormat::Yaml => super::output::print_structured(&view, format)?,
        OutputFormat::Table | OutputFormat::Wide => println!(
            "node/{} left the cluster: {} instance(s) stopped, {}; its agent is stopping",
            view.node,
            view.stopped,
            match view.seat {
                Seat::HandedOver => "its Raft seat handed over",
                Seat::NoSeat => "it held no Raft seat",
                Seat::LastVoter => "it was the last voter, so the Raft group ends with it",
            }
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `remove node` waits for the leader to drop the node's Raft seat.
const REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `remove node NODE`: forget a dead node, then wait until no Raft seat names it.
pub async fn remove(server: &Target, node: &str, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let view: RemoveView = client
        .post(&format!("/v1/nodes/{node}/remove"), &serde_json::json!({}))
        .await?;
    let deadline = std::time::Instant::now() + REMOVE_WAIT;
    loop {
        let cluster: ClusterView = client.get("/v1/cluster").await?;
        if !cluster.voters.iter().chain(&cluster.learners).any(|n| n == node) {
            break;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "node/{node} is forgotten but the Raft group still lists it after {REMOVE_WAIT:?}; `everynode cluster` shows the voters (a leader is needed to change them)"
            );
            return Ok(ExitCode::FAILURE);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    match format {
        OutputFormat::Json | OutputFormat::Yaml => super::output::print_structured(&view, format)?,
        OutputFormat::Table | OutputFormat::Wide => match view.was {
            MemberState::Left => println!("node/{node} had already left"),
            _ => println!("node/{node} removed"),
        },
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_taint_change_syntax() {
        let req = parse_label_changes(&["zone=a".into(), "tier-".into()]).unwrap();
        assert_eq!(req.set.get("zone").map(String::as_str), Some("a"));
        assert!(req.remove.contains("tier"));
        assert!(parse_label_changes(&["bad key=1".into()]).is_err());

        let req = parse_taint_changes(&[
            "gpu=yes:NoSchedule".into(),
            "maint:NoExecute-".into(),
            "old-".into(),
        ])
        .unwrap();
        assert_eq!(req.add.len(), 1);
        assert_eq!(
            req.remove,
            vec![
                ("maint".to_string(), Some(TaintEffect::NoExecute)),
                ("old".to_string(), None)
            ]
        );
        assert!(parse_taint_changes(&["x:Sometimes".into()]).is_err());
    }
}
