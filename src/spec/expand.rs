//! Kubernetes' `$(VAR)` expansion of env values, commands and args (kubelet's `third_party/forked/golang/expansion`).
//!
//! Rules, as kubelet applies them: `$(NAME)` becomes the value of `NAME` when it is
//! defined and stays as written when it is not; `$$` is a literal `$` (so `$$(NAME)` gives
//! `$(NAME)`); any other `$` is kept; an unclosed `$(` is kept and the scan goes on after it.
//! A name runs to the first `)`, so `$(a(b))` looks up `a(b`.
//!
//! One deliberate difference: Go's version copies only the first *byte* after a lone `$`
//! as a rune, which garbles a non-ASCII character there (`$é`); here it is kept whole.

/// Expands `$(NAME)` references in `input` with `lookup`; see the module rules.
///
/// `lookup` returns a borrowed value so that a map of variables can be passed as
/// `|name| vars.get(name).map(String::as_str)` without copying every value.
pub fn expand<'a>(input: &str, lookup: impl Fn(&str) -> Option<&'a str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        rest = match after.chars().next() {
            // A trailing `$` is kept as written.
            None => {
                out.push('$');
                after
            }
            Some('$') => {
                out.push('$');
                &after[1..]
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    &after[close + 1..]
                }
                // Unclosed: keep `$(` and go on scanning what follows, as kubelet does.
                None => {
                    out.push_str("$(");
                    &after[1..]
                }
            },
            Some(other) => {
                out.push('$');
                out.push(other);
                &after[other.len_utf8()..]
            }
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<&'static str> {
        match name {
            "VAR_A" => Some("A"),
            "VAR_B" => Some("B"),
            "EMPTY" => Some(""),
            "DOLLAR" => Some("$(VAR_A)"),
            "ÜBER" => Some("ü"),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubelet() {
        let cases = [
            ("", ""),
            ("plain", "plain"),
            ("$(VAR_A)", "A"),
            ("x$(VAR_A)y$(VAR_B)z", "xAyBz"),
            ("$(VAR_A)$(VAR_B)", "AB"),
            ("$(EMPTY)", ""),
            ("pre-$(EMPTY)-post", "pre--post"),
            // Undefined names stay as written.
            ("$(UNDEFINED)", "$(UNDEFINED)"),
            ("a $(UNDEFINED) b $(VAR_A)", "a $(UNDEFINED) b A"),
            // `$$` escapes.
            ("$$", "$"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$$VAR_A", "$VAR_A"),
            // Any other `$` stays.
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$ x", "$ x"),
            ("100$", "100$"),
            ("$", "$"),
            ("$)", "$)"),
            // Empty names are looked up, found nowhere, and kept.
            ("$()", "$()"),
            ("a$()b", "a$()b"),
            // The name ends at the first `)`.
            ("$(VAR_A))", "A)"),
            ("$(a(b))", "$(a(b))"),
            ("$((VAR_A))", "$((VAR_A))"),
            // Unclosed references stay, and scanning goes on after `$(`.
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$(x $$", "$(x $"),
            // ... but a later `)` closes it, however much lies between.
            ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
            ("$($(VAR_A)", "$($(VAR_A)"),
            // A value is not expanded again.
            ("$(DOLLAR)", "$(VAR_A)"),
            // Unicode around, after and inside references.
            ("é$(VAR_A)ü", "éAü"),
            ("$é", "$é"),
            ("$(ÜBER)", "ü"),
            ("$(日本)", "$(日本)"),
            ("日本$$語", "日本$語"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, vars), want, "{input:?}");
        }
    }

    #[test]
    fn a_map_of_variables_is_a_lookup() {
        let map = std::collections::BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        let got = expand("$(HOME)/.config", |name| map.get(name).map(String::as_str));
        assert_eq!(got, "/root/.config");
    }
}
