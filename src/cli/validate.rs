//! `everynode validate -f FILE|DIR|-`: checks manifests offline and prints, for each
//! DaemonSet, its name and revision, its warnings and its errors with their field paths.

use std::io::Write;

use anyhow::Context;
use serde::Serialize;

use super::output::OutputFormat;
use crate::spec::{self, Issue, Manifest};

/// Validates every manifest in `source` (a file, a directory or `-`) and prints the result.
/// Returns whether everything is valid; an Err means the source could not be read at all.
pub fn run(source: &str, output: OutputFormat, out: &mut dyn Write) -> anyhow::Result<bool> {
    let manifests = spec::load(source).with_context(|| format!("cannot validate {source}"))?;
    let valid = manifests.iter().all(Manifest::is_valid);
    match output {
        OutputFormat::Table | OutputFormat::Wide => print_text(&manifests, out)?,
        OutputFormat::Json | OutputFormat::Yaml => {
            let report = Report::new(&manifests, valid);
            serde_json::to_writer_pretty(&mut *out, &report).context("cannot write the report")?;
            writeln!(out)?;
        }
    }
    Ok(valid)
}

fn print_text(manifests: &[Manifest], out: &mut dyn Write) -> anyhow::Result<()> {
    let (mut ok, mut warnings) = (0, 0);
    for m in manifests {
        let what = match &m.daemonset {
            Some(ds) if !ds.metadata.name.is_empty() => {
                format!("DaemonSet {}/{}", ds.metadata.namespace, ds.metadata.name)
            }
            Some(_) => "DaemonSet (no name)".to_string(),
            None => "no DaemonSet".to_string(),
        };
        let errors = m.errors().count();
        let verdict = match (m.is_valid(), m.revision()) {
            (true, Some(rev)) => format!("valid, revision {rev}"),
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
    writeln!(
        out,
        "{total} object{}: {ok} valid, {} invalid, {warnings} warning{}",
        plural(total),
        total - ok,
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
    daemonsets: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(flatten)]
    origin: &'a spec::Origin,
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    revision: Option<String>,
    valid: bool,
    errors: Vec<&'a Issue>,
    warnings: Vec<&'a Issue>,
}

impl<'a> Report<'a> {
    fn new(manifests: &'a [Manifest], valid: bool) -> Self {
        let daemonsets = manifests
            .iter()
            .map(|m| Entry {
                origin: &m.origin,
                name: m.name(),
                namespace: m.daemonset.as_ref().map(|d| d.metadata.namespace.as_str()),
                revision: m.is_valid().then(|| m.revision()).flatten(),
                valid: m.is_valid(),
                errors: m.errors().collect(),
                warnings: m.warnings().collect(),
            })
            .collect();
        Report { valid, daemonsets }
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
