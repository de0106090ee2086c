//! Cutting an input into documents (YAML `---` streams, JSON streams) and parsing each into
//! a positioned tree, under budgets that stop alias bombs and oversized documents.

use serde_saphyr::options::AliasLimits;
use serde_saphyr::{Budget, Options};

use super::issue::{Issue, Location};
use super::tree::{Node, Value};

/// Most documents in one input.
pub const MAX_DOCUMENTS: usize = 1000;
/// Most YAML nodes in one document, aliases expanded (a large DaemonSet has a few thousand).
const MAX_NODES_PER_DOCUMENT: usize = 100_000;
/// Most alias-replayed events in one document: stops "billion laughs" documents.
const MAX_ALIAS_REPLAY: usize = 20_000;

/// One document: its tree, or why it could not be parsed.
pub(crate) struct Document {
    /// First line of the document, for YAML.
    pub line: Option<u32>,
    pub root: Result<Node, Issue>,
}

/// An input that failed before any document could be told apart.
pub(crate) struct Failed(pub Issue);

/// Splits a text into documents: a JSON stream if it starts like JSON and parses as JSON,
/// else a YAML stream.
pub(crate) fn documents(text: &str) -> Result<Vec<Document>, Failed> {
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{' | '[')) {
        match json_documents(text) {
            Ok(docs) => return Ok(docs),
            // Flow-style YAML also starts with a bracket; only if it is not YAML either is
            // the JSON error the one to show.
            Err(json_err) => {
                let yaml = yaml_documents(text)?;
                if yaml.iter().all(|d| d.root.is_ok()) {
                    return Ok(yaml);
                }
                return Err(Failed(json_err));
            }
        }
    }
    yaml_documents(text)
}

fn json_documents(text: &str) -> Result<Vec<Document>, Issue> {
    let mut docs = Vec::new();
    for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| {
            Issue::error("", format!("invalid JSON: {e}")).at(Some(Location {
                line: u32::try_from(e.line()).unwrap_or(u32::MAX),
                column: u32::try_from(e.column()).unwrap_or(u32::MAX),
            }))
        })?;
        if docs.len() >= MAX_DOCUMENTS {
            return Err(too_many_documents());
        }
        docs.push(Document {
            line: None,
            root: Ok(Node::from_json(value)),
        });
    }
    Ok(docs)
}

fn too_many_documents() -> Issue {
    Issue::error("", format!("more than {MAX_DOCUMENTS} documents in one input"))
        .with_hint("split the input into several files")
}

fn yaml_options() -> Options {
    let mut budget = Budget::default();
    budget.max_nodes = MAX_NODES_PER_DOCUMENT;
    budget.max_events = MAX_NODES_PER_DOCUMENT * 4;
    budget.max_documents = 1;
    let mut aliases = AliasLimits::default();
    aliases.max_total_replayed_events = MAX_ALIAS_REPLAY;
    let mut options = Options::default();
    options.budget = Some(budget);
    options.alias_limits = aliases;
    // YAML 1.2 booleans only: `on`, `y` and `no` stay strings (a key `y:` must not turn into
    // `true:`), and a boolean field written `yes` gets a clear type error.
    options.strict_booleans = true;
    // kubectl reads YAML 1.1 octals: `defaultMode: 0644` is 420, as every bundle means it.
    options.legacy_octal_numbers = true;
    options.with_snippet = false;
    options
}

fn yaml_documents(text: &str) -> Result<Vec<Document>, Failed> {
    let mut docs = Vec::new();
    let mut total_nodes = 0usize;
    for (first_line, chunk) in split_documents(text) {
        let root = match serde_saphyr::from_str_with_options::<Option<Node>>(chunk, yaml_options()) {
            Ok(None) => continue,
            Ok(Some(mut node)) => {
                node.shift_lines(first_line);
                total_nodes += count_nodes(&node);
                Ok(node)
            }
            Err(e) => Err(yaml_error(&e, first_line)),
        };
        if docs.len() >= MAX_DOCUMENTS || total_nodes > MAX_NODES_PER_DOCUMENT * 10 {
            return Err(Failed(too_many_documents()));
        }
        let line = match &root {
            Ok(node) => node.location.map(|l| l.line),
            Err(_) => first_content_line(chunk).map(|n| n + first_line),
        };
        docs.push(Document { line, root });
    }
    Ok(docs)
}

/// `12, column 5`, exactly.
fn is_line_column(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    s.split_once(", column ")
        .is_some_and(|(line, column)| digits(line) && digits(column))
}

/// The 1-based line of the first line that is not blank, a comment, a directive or `---`.
fn first_content_line(chunk: &str) -> Option<u32> {
    chunk
        .lines()
        .position(|l| {
            let t = l.trim();
            !(t.is_empty() || t.starts_with('#') || t.starts_with('%') || t == "---")
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.value {
        Value::Seq(items) => items.iter().map(count_nodes).sum(),
        Value::Map(entries) => entries.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
        _ => 0,
    }
}

/// A YAML error with serde-saphyr's own position prefix replaced by ours.
fn yaml_error(e: &serde_saphyr::Error, line_offset: u32) -> Issue {
    let text = e.to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let message = match text.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(text, |(_, m)| m),
        None => text,
    };
    let message = message.lines().next().unwrap_or(message);
    // The position is given separately; serde-saphyr repeats it at the end.
    let message = match message.rsplit_once(" at line ") {
        Some((head, tail)) if is_line_column(tail) => head,
        _ => message,
    };
    let hint = if message.contains("limit") || message.contains("budget") {
        "the document is too large once its aliases (*name) are expanded; write the values out or split the document"
    } else {
        "fix the YAML syntax; `kubectl apply --dry-run=client -f FILE` shows the same problem"
    };
    let location = e.location().filter(|l| l.line() > 0).map(|l| Location {
        line: u32::try_from(l.line())
            .unwrap_or(u32::MAX)
            .saturating_add(line_offset),
        column: u32::try_from(l.column()).unwrap_or(u32::MAX),
    });
    Issue::error("", format!("invalid YAML: {message}"))
        .at(location)
        .with_hint(hint)
}

/// Cuts a YAML stream into documents at `---` and after `...`, so that one broken document
/// does not hide the others and each keeps its line numbers. YAML forbids such marker
/// lines inside scalars, so a line-based cut agrees with the parser. Leading comments and
/// directives stay with the document that follows them.
fn split_documents(text: &str) -> Vec<(u32, &str)> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line) = (0usize, 0u32);
    let mut has_content = false;
    let mut offset = 0usize;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = |m: &str| {
            bare.strip_prefix(m)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
        };
        if is_marker("---") {
            if has_content {
                chunks.push((start_line, &text[start..offset]));
                (start, start_line) = (offset, n);
            }
            let rest = bare[3..].trim();
            has_content = !rest.is_empty() && !rest.starts_with('#');
        } else if is_marker("...") {
            offset += line.len();
            chunks.push((start_line, &text[start..offset]));
            (start, start_line) = (offset, n + 1);
            has_content = false;
            continue;
        } else {
            let t = bare.trim_start();
            if !(t.is_empty() || t.starts_with('#') || (t.starts_with('%') && !has_content)) {
                has_content = true;
            }
        }
        offset += line.len();
    }
    if start < text.len() {
        chunks.push((start_line, &text[start..]));
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_split_at_markers_only() {
        let text = "# head\n---\na: 1\n---\n\n---   # c\nb: |\n  text\n  --- not a marker\n...\nc: 3\n";
        let chunks: Vec<(u32, &str)> = split_documents(text);
        let starts: Vec<u32> = chunks.iter().map(|c| c.0).collect();
        assert_eq!(starts, [0, 3, 10]);
        assert!(chunks[0].1.starts_with("# head\n---\na: 1"));
        assert!(chunks[1].1.contains("--- not a marker"));
        assert_eq!(chunks[2].1, "c: 3\n");
    }

    #[test]
    fn directives_stay_with_their_document() {
        let chunks = split_documents("%YAML 1.2\n---\na: 1\n");
        assert_eq!(chunks.len(), 1);
    }
}
