//! `get ds`, `describe ds` and `delete ds`: DaemonSets through any node's API.

use std::process::ExitCode;

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::api::daemonsets::DaemonSetView;

pub async fn get(server: &Target, name: Option<&str>, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let views: Vec<DaemonSetView> = match name {
        Some(n) => vec![client.get(&format!("/v1/daemonsets/{n}")).await?],
        None => client.get("/v1/daemonsets").await?,
    };
    match format {
        OutputFormat::Json | OutputFormat::Yaml if name.is_some() => {
            output::print_structured(&views[0].record.daemonset, format)?
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            let items: Vec<_> = views.iter().map(|v| &v.record.daemonset).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            output::print_structured(&list, format)?
        }
        OutputFormat::Table | OutputFormat::Wide => {
            if views.is_empty() {
                eprintln!("No daemonsets found.");
                return Ok(ExitCode::SUCCESS);
            }
            print!("{}", render_table(&views, format == OutputFormat::Wide));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The ROLLOUT column: the phase, and how many absent nodes are held back on an older revision
/// (comma-joined without spaces, as kubectl's `Ready,SchedulingDisabled`).
pub(crate) fn rollout_column(v: &crate::api::rollout::RolloutView) -> String {
    let away = super::rollout::held_away(v).len();
    if away == 0 {
        format!("{:?}", v.phase)
    } else {
        format!("{:?},{away}-held-back", v.phase)
    }
}

pub fn render_table(views: &[DaemonSetView], wide: bool) -> String {
    let mut header = vec![
        "NAME",
        "DESIRED",
        "CURRENT",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "ROLLOUT",
        "NODE SELECTOR",
        "AGE",
    ];
    if wide {
        header.extend(["MISSCHEDULED", "CONTAINERS", "IMAGES", "REVISION"]);
    }
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let selector: Vec<String> = v
                .node_selector
                .iter()
                .map(|(k, val)| format!("{k}={val}"))
                .collect();
            let c = &v.status;
            let mut row = vec![
                v.name.clone(),
                v.desired.to_string(),
                c.current.to_string(),
                c.ready.to_string(),
                c.up_to_date.to_string(),
                c.available.to_string(),
                rollout_column(&v.rollout),
                if selector.is_empty() {
                    "<none>".into()
                } else {
                    selector.join(",")
                },
                output::age(Some(v.created_at)),
            ];
            if wide {
                let containers: Vec<String> = v
                    .record
                    .daemonset
                    .spec
                    .template
                    .spec
                    .containers
                    .iter()
                    .map(|c| c.name.clone())
                    .collect();
                row.extend([
                    c.misscheduled.to_string(),
                    containers.join(","),
                    v.images.join(","),
                    v.revision.to_string(),
                ]);
            }
            row
        })
        .collect();
    output::table(&header, &rows)
}

pub async fn describe(server: &Target, name: &str) -> anyhow::Result<ExitCode> {
    let v: DaemonSetView = Client::new(server)?
        .get(&format!("/v1/daemonsets/{name}"))
        .await?;
    print!("{}", render_description(&v));
    Ok(ExitCode::SUCCESS)
}

pub fn render_description(v: &DaemonSetView) -> String {
    use std::fmt::Write;
    let ds = &v.record.daemonset;
    let mut out = String::new();
    let _ = writeln!(out, "Name:           {}", v.name);
    let _ = writeln!(out, "Namespace:      {}", v.namespace);
    let labels: Vec<String> = ds
        .metadata
        .labels
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    let _ = writeln!(
        out,
        "Labels:         {}",
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join(",")
        }
    );
    let selector: Vec<String> = v
        .node_selector
        .iter()
        .map(|(k, val)| format!("{k}={val}"))
        .collect();
    let _ = writeln!(
        out,
        "Node-Selector:  {}",
        if selector.is_empty() {
            "<none>".into()
        } else {
            selector.join(",")
        }
    );
    let _ = writeln!(out, "Strategy:       {}", v.rollout.strategy);
    let _ = writeln!(out, "Generation:     {}", v.record.generation);
    let _ = writeln!(out, "Desired Number of Nodes Scheduled: {}", v.desired);
    let _ = writeln!(out, "Pod Template:");
    for c in &ds.spec.template.spec.containers {
        let _ = writeln!(out, "  {}:", c.name);
        let _ = writeln!(out, "    Image:      {}", c.image);
        if !c.command.is_empty() {
            let _ = writeln!(out, "    Command:    {}", c.command.join(" "));
        }
        if !c.args.is_empty() {
            let _ = writeln!(out, "    Args:       {}", c.args.join(" "));
        }
    }
    if !v.record.not_honoured.is_empty() {
        // The same words apply and validate print: one table of honoured fields serves all.
        let _ = writeln!(out, "Not honoured:");
        for w in &v.record.not_honoured {
            let _ = writeln!(out, "  {w}");
        }
    }
    let _ = writeln!(out, "Revisions:");
    let rows: Vec<Vec<String>> = v
        .record
        .revisions
        .iter()
        .rev()
        .map(|r| {
            vec![
                format!("  {}", r.number),
                r.hash.clone(),
                output::age(Some(r.created_at)),
                r.change_cause.clone().unwrap_or_else(|| "<none>".into()),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &["  REVISION", "HASH", "AGE", "CHANGE-CAUSE"],
        &rows,
    ));
    out.push_str(&super::rollout::render_progress(&v.rollout));
    let _ = writeln!(out, "Placement:");
    let rows: Vec<Vec<String>> = v
        .placement
        .iter()
        .map(|p| {
            vec![
                format!("  {}", p.node),
                p.node_state.to_string(),
                p.reason.clone(),
            ]
        })
        .collect();
    out.push_str(&output::table(&["  NODE", "STATE", "PLACEMENT"], &rows));
    let _ = writeln!(out, "Events:");
    if v.record.events.is_empty() {
        let _ = writeln!(out, "  <none>");
    } else {
        let rows: Vec<Vec<String>> = v
            .record
            .events
            .iter()
            .rev()
            .map(|e| {
                vec![
                    format!("  {}", e.reason),
                    output::age(Some(e.at)),
                    e.message.clone(),
                ]
            })
            .collect();
        out.push_str(&output::table(&["  REASON", "AGE", "MESSAGE"], &rows));
    }
    out
}

pub async fn delete(server: &Target, name: &str) -> anyhow::Result<ExitCode> {
    Client::new(server)?
        .delete(&format!("/v1/daemonsets/{name}"))
        .await?;
    println!("daemonset.apps \"{name}\" deleted");
    Ok(ExitCode::SUCCESS)
}
