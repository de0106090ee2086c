//! `apply -f` and `delete -f` on bundles: every object of the input read and checked locally, the stored kinds sent, the others skipped with one line each.

use std::process::ExitCode;

use anyhow::bail;

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::api::daemonsets::{ApplyRequest, ApplyResult};
use crate::control::store::ApplyOutcome;
use crate::error::InputError;
use crate::spec::{Object, Valid};

/// Reads and validates every object of `source`, so mistakes are listed before anything is
/// sent: one invalid object refuses the whole input.
pub(crate) fn load_valid(source: &str) -> anyhow::Result<Vec<Valid>> {
    let manifests = crate::spec::load(source).map_err(|e| InputError::new(e.to_string()))?;
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for m in manifests {
        match m.into_valid() {
            Ok(v) => valid.push(v),
            Err(invalid) => errors.push(invalid.to_string()),
        }
    }
    if !errors.is_empty() {
        bail!(InputError::new(format!(
            "{}\nnothing was applied",
            errors.join("\n")
        )));
    }
    Ok(valid)
}

/// The objects to store, after printing one line for each skipped one; an input with nothing
/// to store is an error.
fn stored(source: &str, valid: Vec<Valid>, what: &str) -> anyhow::Result<Vec<Valid>> {
    let mut skipped = 0;
    let mut kept = Vec::new();
    for v in valid {
        if let Some(note) = v.object.skipped_note() {
            // stderr keeps `-o json` output parseable.
            eprintln!("{note}");
            skipped += 1;
        } else {
            kept.push(v);
        }
    }
    if kept.is_empty() {
        // Exit 1, not 2: the input is well formed, there is just nothing here for everynode.
        bail!(
            "{source}: nothing everynode can {what}: {skipped} object{} skipped; everynode stores DaemonSets, ConfigMaps and Secrets",
            if skipped == 1 { "" } else { "s" }
        );
    }
    Ok(kept)
}

pub async fn apply(server: &Target, source: &str, format: OutputFormat) -> anyhow::Result<ExitCode> {
    let valid = stored(source, load_valid(source)?, "apply")?;
    // As written, not as modelled: the server then names every field it does not honour.
    let objects = valid.iter().map(|v| v.raw.clone()).collect();
    let results: Vec<ApplyResult> = Client::new(server)?
        .post("/v1/apply", &ApplyRequest { objects })
        .await?;
    if matches!(format, OutputFormat::Json | OutputFormat::Yaml) {
        output::print_structured(&results, format)?;
        return Ok(ExitCode::SUCCESS);
    }
    for r in &results {
        for w in &r.warnings {
            eprintln!("Warning: {}: {w}", reference(&r.kind, &r.name));
        }
        let word = match r.outcome {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        };
        println!("{} {word}", reference(&r.kind, &r.name));
    }
    Ok(ExitCode::SUCCESS)
}

/// `kind/name` as kubectl prints it.
pub(crate) fn reference(kind: &str, name: &str) -> String {
    match kind {
        "DaemonSet" => format!("daemonset.apps/{name}"),
        other => format!("{}/{name}", other.to_ascii_lowercase()),
    }
}

/// Deletes every stored object of `source`; one that is not found is an error line, and the
/// others are still deleted (as `kubectl delete -f` does).
pub async fn delete(server: &Target, source: &str) -> anyhow::Result<ExitCode> {
    let valid = stored(source, load_valid(source)?, "delete")?;
    let client = Client::new(server)?;
    let mut failed = false;
    // DaemonSets first, so no instance outlives the configuration it mounts.
    let mut objects: Vec<Object> = valid.into_iter().map(|v| v.object).collect();
    objects.sort_by_key(|o| !matches!(o, Object::DaemonSet(_)));
    for o in objects {
        let namespace = o.namespace().unwrap_or("default");
        let path = match &o {
            Object::DaemonSet(d) => format!("/v1/daemonsets/{}", d.metadata.name),
            Object::ConfigMap(_) => format!("/v1/configmaps/{namespace}/{}", o.name()),
            Object::Secret(_) => format!("/v1/secrets/{namespace}/{}", o.name()),
            _ => continue,
        };
        match client.delete(&path).await {
            Ok(()) => {
                let kind = reference(o.kind(), "");
                println!("{} \"{}\" deleted", kind.trim_end_matches('/'), o.name());
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
