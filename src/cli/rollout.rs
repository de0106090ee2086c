//! `rollout status|history|undo|pause|resume|restart` and `delete pod`: follow and steer a DaemonSet's rolling update.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde::Serialize;

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::api::daemonsets::DaemonSetView;
use crate::api::rollout::{Phase, RolloutActionResult, RolloutView, UndoRequest};
use crate::error::InputError;

/// Accepts `ds NAME`, `ds/NAME` (as kubectl does) and the long spellings of `ds`.
pub fn parse_target(kind: &str, name: Option<&str>) -> Result<String, InputError> {
    let (kind, name) = match (kind.split_once('/'), name) {
        (Some((k, n)), None) => (k, n),
        (None, Some(n)) => (kind, n),
        (Some(_), Some(_)) => {
            return Err(InputError::new(format!(
                "give `ds/NAME` or `ds NAME`, not both ({kind} {})",
                name.unwrap_or_default()
            )))
        }
        (None, None) => {
            return Err(InputError::new(format!(
                "missing the DaemonSet name: write `ds NAME` (got `{kind}`)"
            )))
        }
    };
    if !matches!(kind, "ds" | "daemonset" | "daemonsets") {
        return Err(InputError::new(format!(
            "rollouts apply to DaemonSets only: write `ds {name}` (got `{kind}`)"
        )));
    }
    if name.is_empty() {
        return Err(InputError::new("the DaemonSet name is empty"));
    }
    Ok(name.to_string())
}

/// Reads `90`, `90s`, `5m` or `1h`.
pub fn parse_timeout(s: &str) -> Result<Duration, InputError> {
    let err = || {
        InputError::new(format!(
            "--timeout {s:?} is not a duration: write seconds (90), or a number with s, m or h (5m)"
        ))
    };
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = digits.parse().map_err(|_| err())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(err()),
    };
    Ok(Duration::from_secs(secs))
}

/// The held nodes still absent, as `n3 (revision 1), n4 (revision 1)`; empty if none.
pub fn held_away(v: &RolloutView) -> Vec<String> {
    v.held
        .iter()
        .filter(|h| !h.returned)
        .map(|h| match h.revision {
            Some(n) => format!("{} (revision {n})", h.node),
            None => h.node.clone(),
        })
        .collect()
}

fn progress_line(v: &RolloutView) -> String {
    let mut line = format!(
        "{:?}: revision {}, wave {}: {} of {} nodes updated, {} updated and available, {} available",
        v.phase, v.revision, v.wave, v.updated, v.desired, v.updated_available, v.available
    );
    if !v.pending.is_empty() {
        let _ = write!(line, "; waiting for {}", v.pending.join(", "));
    }
    if let Some(f) = &v.failure {
        let _ = write!(line, "; failed nodes: {}", f.nodes.join(", "));
    }
    let away = held_away(v);
    if !away.is_empty() {
        let _ = write!(line, "; held back while absent: {}", away.join(", "));
    }
    line
}

/// How `rollout status` ended, as JSON for scripts.
#[derive(Debug, Serialize)]
struct StatusOutcome<'a> {
    done: bool,
    reason: String,
    rollout: &'a RolloutView,
}

pub async fn status(
    server: &Target,
    name: &str,
    timeout: Option<Duration>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let path = format!("/v1/daemonsets/{name}/rollout");
    let start = Instant::now();
    let structured = matches!(format, OutputFormat::Json | OutputFormat::Yaml);
    let tty = std::io::stderr().is_terminal() && !structured;
    let mut last = String::new();
    loop {
        let v: RolloutView = client.get(&path).await?;
        let line = progress_line(&v);
        if line != last {
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else if structured {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
            last = line;
        }
        let timed_out = timeout.is_some_and(|t| start.elapsed() >= t);
        if v.phase.is_final() || timed_out {
            if tty {
                eprintln!();
            }
            let (ok, reason) = match v.phase {
                Phase::Complete => {
                    let mut reason = format!("daemon set \"{name}\" successfully rolled out (revision {})", v.revision);
                    let away = held_away(&v);
                    if !away.is_empty() {
                        let _ = write!(
                            reason,
                            "; {} absent node(s) keep their revision and are updated within the budget when they return: {}",
                            away.len(),
                            away.join(", ")
                        );
                    }
                    (true, reason)
                }
                Phase::Failed => (
                    false,
                    format!(
                        "rollout of {name} failed and is paused: {}; fix the template and apply it, `everynode rollout undo ds {name}`, or `everynode rollout resume ds {name}` to retry",
                        v.failure.as_ref().map(|f| f.reason.as_str()).unwrap_or("unknown reason")
                    ),
                ),
                Phase::RolledBack => (
                    false,
                    format!(
                        "rollout of {name} failed and was rolled back to revision {}: {}",
                        v.revision,
                        v.failure.as_ref().map(|f| f.reason.as_str()).unwrap_or("unknown reason")
                    ),
                ),
                Phase::Paused => (
                    false,
                    format!("rollout of {name} is paused; `everynode rollout resume ds {name}` continues it"),
                ),
                _ => (
                    false,
                    format!(
                        "timed out after {} waiting for the rollout of {name} ({} of {} nodes updated and available)",
                        output::human_duration(start.elapsed().as_secs()),
                        v.updated_available,
                        v.desired
                    ),
                ),
            };
            if structured {
                output::print_structured(
                    &StatusOutcome {
                        done: ok,
                        reason: reason.clone(),
                        rollout: &v,
                    },
                    format,
                )?;
            } else if ok {
                println!("{reason}");
            }
            if !ok && !structured {
                eprintln!("error: {reason}");
            }
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One revision as `rollout history -o json` prints it.
#[derive(Debug, Serialize)]
struct HistoryEntry {
    revision: u64,
    hash: String,
    images: Vec<String>,
    change_cause: Option<String>,
    created_at: u64,
    current: bool,
}

pub async fn history(
    server: &Target,
    name: &str,
    revision: Option<u64>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let v: DaemonSetView = Client::new(server)?
        .get(&format!("/v1/daemonsets/{name}"))
        .await?;
    let current = v.record.current_revision().number;
    if let Some(n) = revision {
        let Some(r) = v.record.revisions.iter().find(|r| r.number == n) else {
            let numbers: Vec<String> = v.record.revisions.iter().map(|r| r.number.to_string()).collect();
            bail!(InputError::new(format!(
                "daemonset {name} has no revision {n}; its revisions are {}",
                numbers.join(", ")
            )));
        };
        let format = if format == OutputFormat::Json {
            format
        } else {
            OutputFormat::Yaml
        };
        output::print_structured(&r.template, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    let entries: Vec<HistoryEntry> = v
        .record
        .revisions
        .iter()
        .map(|r| HistoryEntry {
            revision: r.number,
            hash: r.hash.clone(),
            images: r
                .template
                .spec
                .containers
                .iter()
                .map(|c| c.image.clone())
                .collect(),
            change_cause: r.change_cause.clone(),
            created_at: r.created_at,
            current: r.number == current,
        })
        .collect();
    if matches!(format, OutputFormat::Json | OutputFormat::Yaml) {
        output::print_structured(&entries, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("daemonset.apps/{name}");
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                if e.current {
                    format!("{} (current)", e.revision)
                } else {
                    e.revision.to_string()
                },
                e.hash.clone(),
                e.images.join(","),
                e.change_cause.clone().unwrap_or_else(|| "<none>".into()),
                chrono::DateTime::from_timestamp(e.created_at as i64, 0)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["REVISION", "HASH", "IMAGES", "CHANGE-CAUSE", "CREATED"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// `pause`, `resume`, `restart` and `undo`.
pub async fn act(
    server: &Target,
    name: &str,
    action: &str,
    to_revision: Option<u64>,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let path = format!("/v1/daemonsets/{name}/rollout/{action}");
    let result: RolloutActionResult = if action == "undo" {
        client.post(&path, &UndoRequest { to_revision }).await?
    } else {
        client.post(&path, &serde_json::json!({})).await?
    };
    if matches!(format, OutputFormat::Json | OutputFormat::Yaml) {
        output::print_structured(&result, format)?;
    } else if action == "undo" && !result.changed {
        println!(
            "daemonset.apps/{name} skipped rollback (the current template is already revision {})",
            to_revision.map_or_else(|| "the one asked for".to_string(), |n| n.to_string())
        );
    } else {
        println!(
            "daemonset.apps/{name} {} (revision {})",
            result.action, result.revision
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_pod(server: &Target, daemonset: &str, node: &str) -> anyhow::Result<ExitCode> {
    Client::new(server)?
        .delete(&format!("/v1/daemonsets/{daemonset}/pods/{node}"))
        .await?;
    println!("pod \"{daemonset}\" on node {node} deleted; it is replaced at the current revision");
    Ok(ExitCode::SUCCESS)
}

/// The rollout part of `describe ds`.
pub fn render_progress(v: &RolloutView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rollout:        {:?}, revision {}, wave {}",
        v.phase, v.revision, v.wave
    );
    let _ = writeln!(
        out,
        "  Updated:      {} of {} nodes ({} available); {} available in all",
        v.updated, v.desired, v.updated_available, v.available
    );
    if !v.held.is_empty() {
        let held: Vec<String> = v
            .held
            .iter()
            .map(|h| {
                let revision = h.revision.map_or_else(|| "-".to_string(), |n| n.to_string());
                let where_ = if h.returned {
                    "back, waiting for its wave"
                } else {
                    "absent"
                };
                format!("{} (revision {revision}, {where_})", h.node)
            })
            .collect();
        let _ = writeln!(out, "  Held back:    {}", held.join(", "));
    }
    if let Some(f) = &v.failure {
        let what = match f.rolled_back_to {
            Some(n) => format!("rolled back to revision {n}"),
            None => "paused".to_string(),
        };
        let _ = writeln!(out, "  Failure:      {what}: {}", f.reason);
    }
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| {
            let num = |r: Option<u64>| r.map_or_else(|| "-".to_string(), |r| r.to_string());
            vec![
                format!("  {}", n.node),
                num(n.granted),
                num(n.running),
                n.state.clone(),
                if n.available { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push_str(&output::table(
            &["  NODE", "GRANTED", "RUNNING", "STATE", "AVAILABLE"],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_timeouts() {
        assert_eq!(parse_target("ds", Some("agent")).unwrap(), "agent");
        assert_eq!(parse_target("ds/agent", None).unwrap(), "agent");
        assert_eq!(parse_target("daemonset", Some("a")).unwrap(), "a");
        assert!(parse_target("deployment/agent", None)
            .unwrap_err()
            .to_string()
            .contains("DaemonSets only"));
        assert!(parse_target("ds", None).is_err());
        assert_eq!(parse_timeout("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_timeout("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_timeout("5 minutes").is_err());
    }

    #[test]
    fn absent_held_nodes_are_named_by_rollout_status_describe_and_get_ds() {
        let held = |node: &str, returned| crate::api::rollout::HeldNode {
            node: node.into(),
            revision: Some(1),
            since: 0,
            returned,
        };
        let mut v = RolloutView {
            name: "agent".into(),
            phase: Phase::Complete,
            strategy: String::new(),
            revision: 2,
            revision_hash: "h".into(),
            wave: 3,
            paused: false,
            desired: 3,
            updated: 3,
            available: 3,
            updated_available: 3,
            pending: Vec::new(),
            failure: None,
            nodes: Vec::new(),
            held: vec![held("n3", false), held("n4", false)],
        };
        assert!(
            progress_line(&v).ends_with("; held back while absent: n3 (revision 1), n4 (revision 1)"),
            "{}",
            progress_line(&v)
        );
        assert_eq!(crate::cli::daemonsets::rollout_column(&v), "Complete,2-held-back");
        assert!(render_progress(&v).contains("Held back:    n3 (revision 1, absent), n4"));
        // Back and waiting for its wave: progressing, no longer "absent".
        v.phase = Phase::Progressing;
        v.held[0].returned = true;
        assert_eq!(
            crate::cli::daemonsets::rollout_column(&v),
            "Progressing,1-held-back"
        );
        assert!(render_progress(&v).contains("n3 (revision 1, back, waiting for its wave)"));
        v.held.clear();
        assert_eq!(crate::cli::daemonsets::rollout_column(&v), "Progressing");
    }
}
