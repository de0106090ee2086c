//! Kubernetes' name syntaxes (RFC 1123 labels and subdomains, IANA service names, environment
//! variable names), each returning the detail Kubernetes prints when a name is refused.

pub(crate) const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters (e.g. 'my-name' or '123-abc')";
pub(crate) const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', must start and end with an alphanumeric character, and be at most 253 characters (e.g. 'example.com')";
pub(crate) const IANA_SVC_NAME: &str = "must be at most 15 characters of lower case alphanumerics or '-', contain at least one letter, start and end with an alphanumeric character, and not contain '--' (e.g. 'http' or 'metrics')";
pub(crate) const ENV_VAR_NAME: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

pub(crate) const CONFIG_MAP_KEY: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or 'KEY_NAME', or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn label_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// RFC 1123 label: container, volume and namespace names.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && alnum_lower(b[0])
        && alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| label_char(c))
}

/// RFC 1123 subdomain: object names.
pub(crate) fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// IANA service name: port names, which probes may refer to.
pub(crate) fn is_iana_svc_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && alnum_lower(b[0])
        && alnum_lower(b[b.len() - 1])
        && b.iter().all(|&c| label_char(c))
        && b.iter().any(u8::is_ascii_lowercase)
        && !s.contains("--")
}

/// Environment variable name, with the rule Kubernetes applies since 1.32
/// (`RelaxedEnvironmentVariableValidation`): what a process environment can hold.
pub(crate) fn is_env_var_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'=')
}

/// ConfigMap and Secret key: what can be a file name in a volume and (mostly) a variable name.
/// `.` and `..` are refused, and so is a leading `..`, which kubelet reserves for its own
/// entries (`..data`).
pub(crate) fn is_config_map_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with("..")
        && s != "."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "node-exporter", "1abc", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"a".repeat(64)] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
    }

    #[test]
    fn dns_subdomains() {
        for ok in ["a", "fluent-bit", "kube-proxy.v1", "a.b.c"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "a..b", ".a", "a.", "Fluent", "a_b", &"a".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn port_names() {
        for ok in ["http", "metrics", "http-2", "a1"] {
            assert!(is_iana_svc_name(ok), "{ok}");
        }
        for bad in ["", "123", "http--x", "-http", "HTTP", "a-very-long-port-name"] {
            assert!(!is_iana_svc_name(bad), "{bad}");
        }
    }

    #[test]
    fn config_map_keys() {
        for ok in [
            "fluent-bit.conf",
            "KEY_NAME",
            "a",
            ".hidden",
            "a..b",
            &"k".repeat(253),
        ] {
            assert!(is_config_map_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "..data", "a/b", "a b", "é", &"k".repeat(254)] {
            assert!(!is_config_map_key(bad), "{bad}");
        }
    }

    #[test]
    fn env_var_names() {
        for ok in ["NODE_NAME", "my.env-name", "_x", "a1", "1A", "A B"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "A=B", "Ä", "tab\t"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
