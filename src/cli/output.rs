//! Output for people (aligned tables, ages) and for scripts (JSON).
//!
//! The table is kubectl's plain layout (columns three spaces apart, no borders), which is a
//! few lines to write and easier to match exactly than to configure a table crate into.

use std::time::{SystemTime, UNIX_EPOCH};

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The table with more columns.
    Wide,
    /// JSON for scripts.
    Json,
    /// YAML, as kubectl prints objects.
    Yaml,
}

/// Renders rows under a header with columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push('\n');
    }
    out
}

/// kubectl-style age: `45s`, `3m20s`, `5h`, `2d3h`, `40d`.
pub fn age(since_unix_secs: Option<u64>) -> String {
    let Some(since) = since_unix_secs else {
        return "-".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    human_duration(now.saturating_sub(since))
}

pub fn human_duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 2 * 86_400 => format!("{h}h"),
        s if s < 8 * 86_400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

/// Prints a value for scripts: JSON, or YAML as kubectl does for `-o yaml`.
pub fn print_structured<T: serde::Serialize>(value: &T, format: OutputFormat) -> anyhow::Result<()> {
    if format == OutputFormat::Yaml {
        print!("{}", serde_saphyr::to_string(value)?);
    } else {
        println!("{}", serde_json::to_string_pretty(value)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_like_kubectl() {
        for (secs, want) in [
            (5, "5s"),
            (130, "2m10s"),
            (900, "15m"),
            (4 * 3600 + 60, "4h1m"),
            (86_400, "24h"),
            (3 * 86_400 + 7200, "3d2h"),
            (40 * 86_400, "40d"),
        ] {
            assert_eq!(human_duration(secs), want);
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "STATE"],
            &[
                vec!["a-long-name".into(), "alive".into()],
                vec!["b".into(), "dead".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          STATE\na-long-name   alive\nb             dead\n"
        );
    }
}
