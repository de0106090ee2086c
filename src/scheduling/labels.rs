//! Label keys and values: Kubernetes' syntax rules and the `KEY=VALUE` flag form.

use std::collections::BTreeMap;

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn validate_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() || prefix.len() > 253 || !is_dns_subdomain(prefix) {
            return Err(format!(
                "label key `{key}`: prefix `{prefix}` must be a DNS subdomain (lowercase alphanumerics, `-` and `.`, at most 253 characters)"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("label key `{key}`: name part must not be empty"));
    }
    if name.len() > 63 || !is_qualified_name_part(name) {
        return Err(format!(
            "label key `{key}`: name must be at most 63 characters of alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or at most 63 characters of alphanumerics, `-`, `_`, `.`,
/// starting and ending alphanumeric.
pub fn validate_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 || !is_qualified_name_part(value) {
        return Err(format!(
            "label value `{value}` must be at most 63 characters of alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// Parses `KEY=VALUE` (the `--label` flag form).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label `{s}` must be KEY=VALUE, e.g. zone=eu-west-1a"))?;
    validate_label_key(k)?;
    validate_label_value(v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Parses several `KEY=VALUE` labels into a map; a later duplicate key wins.
pub fn parse_labels<'a>(
    items: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>, String> {
    items.into_iter().map(parse_label).collect()
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| is_alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.split('.').all(|part| {
        let b = part.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        for ok in ["zone", "kubernetes.io/hostname", "a.b-c_d", "example.com/x"] {
            assert!(validate_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "x-",
            "Example.com/x",
            "/x",
            "a/",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn label_flags() {
        assert_eq!(parse_label("zone=a").unwrap(), ("zone".into(), "a".into()));
        assert_eq!(parse_label("empty=").unwrap(), ("empty".into(), "".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("k=bad value").is_err());
    }
}
