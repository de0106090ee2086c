//! Node taints: the `KEY[=VALUE]:EFFECT` syntax shared by flags, config files and the API.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a taint does to instances that do not tolerate it (Kubernetes `TaintEffect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaintEffect {
    /// New instances are not placed; running ones stay.
    NoSchedule,
    /// A soft preference; never blocks a DaemonSet.
    PreferNoSchedule,
    /// New instances are not placed and running ones are evicted.
    NoExecute,
}

impl TaintEffect {
    /// Every effect, in the order Kubernetes documents them; used in error messages.
    pub const ALL: [TaintEffect; 3] = [
        TaintEffect::NoSchedule,
        TaintEffect::PreferNoSchedule,
        TaintEffect::NoExecute,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

impl fmt::Display for TaintEffect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaintEffect {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaintEffect::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!("unknown taint effect `{s}` (expected NoSchedule, PreferNoSchedule or NoExecute)")
            })
    }
}

/// A taint on a node. The value may be empty, as in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

impl FromStr for Taint {
    type Err = String;

    /// Parses `KEY[=VALUE]:EFFECT`, as `kubectl taint` does.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kv, effect) = s.rsplit_once(':').ok_or_else(|| {
            format!("taint `{s}` has no effect; expected KEY[=VALUE]:EFFECT, e.g. dedicated=gpu:NoSchedule")
        })?;
        let effect: TaintEffect = effect.parse().map_err(|e| format!("taint `{s}`: {e}"))?;
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, v),
            None => (kv, ""),
        };
        crate::scheduling::labels::validate_label_key(key).map_err(|e| format!("taint `{s}`: {e}"))?;
        crate::scheduling::labels::validate_label_value(value).map_err(|e| format!("taint `{s}`: {e}"))?;
        Ok(Taint {
            key: key.to_string(),
            value: value.to_string(),
            effect,
        })
    }
}

impl Serialize for Taint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Taint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_taints() {
        let cases = [
            (
                "dedicated=gpu:NoSchedule",
                "dedicated",
                "gpu",
                TaintEffect::NoSchedule,
            ),
            ("maintenance:NoExecute", "maintenance", "", TaintEffect::NoExecute),
            (
                "example.com/zone=a:PreferNoSchedule",
                "example.com/zone",
                "a",
                TaintEffect::PreferNoSchedule,
            ),
        ];
        for (input, key, value, effect) in cases {
            let t: Taint = input.parse().unwrap();
            assert_eq!((t.key.as_str(), t.value.as_str(), t.effect), (key, value, effect));
            assert_eq!(t.to_string(), input);
        }
    }

    #[test]
    fn rejects_malformed_taints() {
        for bad in [
            "x:Sometimes",
            "x",
            ":NoSchedule",
            "bad key=v:NoSchedule",
            "k=v v:NoExecute",
        ] {
            assert!(bad.parse::<Taint>().is_err(), "{bad} should be refused");
        }
    }
}
