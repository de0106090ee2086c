//! `everynode validate -f FILE|DIR|-`: checks manifests offline and prints, for each object,
//! its kind and name (and a DaemonSet's revision), its warnings and its errors with their
//! field paths, and which objects would be skipped.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use super::output::OutputFormat;
use crate::spec::{self, Issue, Manifest, Object};

/// Validates every manifest in `source` (a file, a directory or `-`) and prints the result.
/// Returns whether everything is valid; an Err means the source could not be read at all.
pub fn run(source: &str, output: OutputFormat, out: &mut dyn Write) -> anyhow::Result<bool> {
    let manifests = spec::load(source).with_context(|| format!("cannot validate {source}"))?;
    let storable = manifests
        .iter()
        .any(|m| m.object.as_ref().is_some_and(Object::is_stored));
    let valid = manifests.iter().all(Manifest::is_valid) && storable;
    match output {
        OutputFormat::Table | OutputFormat::Wide => {
            print_text(&manifests, out)?;
            if !storable && manifests.iter().all(Manifest::is_valid) {
                writeln!(
                    out,
                    "{source}: nothing everynode can store: it stores DaemonSets, ConfigMaps and Secrets"
                )?;
            }
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            let report = Report::new(&manifests, valid);
            serde_json::to_writer_pretty(&mut *out, &report).context("cannot write the report")?;
            writeln!(out)?;
        }
    }
    Ok(valid)
}

fn print_text(manifests: &[Manifest], out: &mut dyn Write) -> anyhow::Result<()> {
    let (mut ok, mut warnings, mut skipped) = (0, 0, 0);
    for m in manifests {
        if let Some(note) = m.object.as_ref().and_then(Object::skipped_note) {
            if m.is_valid() {
                writeln!(out, "{}: {note}", m.origin)?;
                skipped += 1;
                continue;
            }
        }
        let what = match &m.object {
            Some(o) if !o.name().is_empty() => match o.namespace() {
                Some(ns) => format!("{} {ns}/{}", o.kind(), o.name()),
                None => format!("{} {}", o.kind(), o.name()),
            },
            Some(o) => format!("{} (no name)", o.kind()),
            None => "no object".to_string(),
        };
        let errors = m.errors().count();
        let verdict = match (m.is_valid(), m.revision()) {
            (true, Some(rev)) => format!("valid, revision {rev}"),
            (true, None) => "valid".to_string(),
            _ => format!("invalid ({errors} error{})", plural(errors)),
        };
        writeln!(out, "{}: {what}: {verdict}", m.origin)?;
        for issue in m.issues.iter() {
            print_issue(out, &m.origin.source, issue)?;
        }
        ok += usize::from(m.is_valid());
        warnings += m.warnings().count();
    }
    let total = manifests.len();
    let skipped_text = if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    };
    writeln!(
        out,
        "{total} object{}: {ok} valid, {} invalid{skipped_text}, {warnings} warning{}",
        plural(total),
        total - ok - skipped,
        plural(warnings)
    )?;
    Ok(())
}

fn print_issue(out: &mut dyn Write, source: &str, issue: &Issue) -> anyhow::Result<()> {
    let level = if issue.is_error() { "error" } else { "warning" };
    let place = match issue.location {
        Some(loc) => format!("{source}:{}:{}: ", loc.line, loc.column),
        None => String::new(),
    };
    let what = if issue.path.is_empty() {
        issue.message.clone()
    } else {
        format!("{}: {}", issue.path, issue.message)
    };
    writeln!(out, "  {level}: {place}{what}")?;
    if let Some(hint) = &issue.hint {
        writeln!(out, "    help: {hint}")?;
    }
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The JSON report: stable field names for scripts.
#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    /// Every object of the input, skipped ones included.
    objects: Vec<Entry<'a>>,
    /// The DaemonSet entries only, as before objects of other kinds were read.
    daemonsets: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    origin: &'a spec::Origin,
    kind: Option<&'a str>,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    revision: Option<String>,
    valid: bool,
    /// Why the object is not stored (skipped kinds, namespaces).
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
    errors: Vec<&'a Issue>,
    warnings: Vec<&'a Issue>,
}

impl<'a> Report<'a> {
    fn new(manifests: &'a [Manifest], valid: bool) -> Self {
        let entry = |m: &'a Manifest| Entry {
            origin: &m.origin,
            kind: m.object.as_ref().map(Object::kind),
            name: m.name(),
            namespace: m.object.as_ref().and_then(Object::namespace),
            revision: m.is_valid().then(|| m.revision()).flatten(),
            valid: m.is_valid(),
            skipped: m.object.as_ref().and_then(Object::skipped_note),
            errors: m.errors().collect(),
            warnings: m.warnings().collect(),
        };
        Report {
            valid,
            objects: manifests.iter().map(entry).collect(),
            daemonsets: manifests
                .iter()
                .filter(|m| m.object.is_none() || m.daemonset().is_some())
                .map(entry)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("everynode-validate-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const VALID: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      serviceAccountName: agent\n      containers:\n      - name: agent\n        image: agent:1.0\n";

    #[test]
    fn text_output_shows_name_revision_and_warnings() {
        let path = write_temp("ok.yaml", VALID);
        let mut out = Vec::new();
        let valid = run(path.to_str().unwrap(), OutputFormat::Table, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(valid, "{text}");
        assert!(
            text.contains("DaemonSet default/agent: valid, revision "),
            "{text}"
        );
        assert!(
            text.contains("warning: ")
                && text.contains(":12:7: spec.template.spec.serviceAccountName: not honoured"),
            "{text}"
        );
        assert!(
            text.ends_with("1 object: 1 valid, 0 invalid, 1 warning\n"),
            "{text}"
        );
    }

    #[test]
    fn errors_make_the_result_false_and_json_lists_them() {
        let path = write_temp("bad.yaml", &VALID.replace("image: agent:1.0", "imag: agent:1.0"));
        let mut out = Vec::new();
        let valid = run(path.to_str().unwrap(), OutputFormat::Json, &mut out).unwrap();
        assert!(!valid);
        let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(report["valid"], false);
        let errors = &report["daemonsets"][0]["errors"];
        assert_eq!(errors[0]["path"], "spec.template.spec.containers[0].imag");
        assert_eq!(errors[0]["message"], "unknown field, did you mean `image`?");
        assert_eq!(errors[0]["location"]["line"], 15);
    }

    #[test]
    fn unreadable_source_is_an_error() {
        let mut out = Vec::new();
        let err = run("/nonexistent/everynode.yaml", OutputFormat::Table, &mut out).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot read /nonexistent/everynode.yaml"),
            "{err:#}"
        );
    }
}
