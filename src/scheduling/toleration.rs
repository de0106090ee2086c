//! Taints against tolerations, as Kubernetes' `ToleratesTaint` and the NoExecute taint
//! manager decide them.

use std::time::Duration;

use super::taint::{Taint, TaintEffect};
use crate::spec::pod::{Toleration, TolerationOperator};

/// Whether one toleration tolerates one taint.
///
/// An empty effect matches every effect; an empty key (only valid with `Exists`) matches
/// every key; `Exists` ignores the value and `Equal` compares it.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect.is_some_and(|e| e != taint.effect) {
        return false;
    }
    if !t.key.is_empty() && t.key != taint.key {
        return false;
    }
    match t.operator {
        TolerationOperator::Exists => true,
        TolerationOperator::Equal => t.value == taint.value,
    }
}

/// The taints that block placement: `NoSchedule` and `NoExecute` ones no toleration
/// tolerates. `PreferNoSchedule` never blocks a DaemonSet.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Vec<&'a Taint> {
    taints
        .iter()
        .filter(|taint| taint.effect != TaintEffect::PreferNoSchedule)
        .filter(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
        .collect()
}

/// A NoExecute taint that is tolerated only for a while: the instance must stop that long
/// after the taint appeared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Zero means at once (a `tolerationSeconds` of 0 or less, as in Kubernetes).
    pub after: Duration,
    pub taint: Taint,
}

/// When the tolerated NoExecute taints of a node evict the instance, following Kubernetes'
/// taint manager: each taint is matched by the *first* toleration that tolerates it; among
/// those, the smallest `tolerationSeconds` wins; tolerations without seconds tolerate
/// forever. None when nothing evicts (or when a NoExecute taint is not tolerated at all:
/// that is a placement failure, not a delayed eviction).
pub fn eviction(taints: &[Taint], tolerations: &[Toleration]) -> Option<Eviction> {
    let mut soonest: Option<Eviction> = None;
    for taint in taints.iter().filter(|t| t.effect == TaintEffect::NoExecute) {
        let first = tolerations.iter().find(|t| tolerates(t, taint))?;
        let Some(seconds) = first.toleration_seconds else {
            continue;
        };
        let after = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        if soonest.as_ref().is_none_or(|e| after < e.after) {
            soonest = Some(Eviction {
                after,
                taint: taint.clone(),
            });
        }
    }
    soonest
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaintEffect::*;

    fn taint(s: &str) -> Taint {
        s.parse().unwrap()
    }

    fn tol(key: &str, op: TolerationOperator, value: &str, effect: Option<TaintEffect>) -> Toleration {
        Toleration {
            key: key.into(),
            operator: op,
            value: value.into(),
            effect,
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_table() {
        use TolerationOperator::*;
        let cases = [
            // Equal compares key and value.
            (tol("k", Equal, "v", Some(NoSchedule)), "k=v:NoSchedule", true),
            (tol("k", Equal, "v", Some(NoSchedule)), "k=w:NoSchedule", false),
            (tol("k", Equal, "", Some(NoSchedule)), "k:NoSchedule", true),
            (tol("k", Equal, "", Some(NoSchedule)), "k=v:NoSchedule", false),
            (tol("k", Equal, "v", Some(NoSchedule)), "j=v:NoSchedule", false),
            // Exists ignores the value.
            (
                tol("k", Exists, "", Some(NoExecute)),
                "k=anything:NoExecute",
                true,
            ),
            (
                tol("k", Exists, "", Some(NoExecute)),
                "j=anything:NoExecute",
                false,
            ),
            // Effects must match unless the toleration's is empty.
            (tol("k", Exists, "", Some(NoSchedule)), "k:NoExecute", false),
            (
                tol("k", Exists, "", Some(PreferNoSchedule)),
                "k:PreferNoSchedule",
                true,
            ),
            (tol("k", Exists, "", None), "k:NoExecute", true),
            (tol("k", Equal, "v", None), "k=v:PreferNoSchedule", true),
            // Empty key with Exists tolerates everything.
            (tol("", Exists, "", None), "any=thing:NoExecute", true),
            (tol("", Exists, "", Some(NoSchedule)), "any:NoSchedule", true),
            (tol("", Exists, "", Some(NoSchedule)), "any:NoExecute", false),
        ];
        for (t, taint_text, want) in cases {
            assert_eq!(tolerates(&t, &taint(taint_text)), want, "{t:?} vs {taint_text}");
        }
    }

    #[test]
    fn prefer_no_schedule_never_blocks() {
        let taints = [
            taint("soft:PreferNoSchedule"),
            taint("hard:NoSchedule"),
            taint("evict:NoExecute"),
        ];
        let blocking: Vec<String> = untolerated(&taints, &[]).iter().map(|t| t.to_string()).collect();
        assert_eq!(blocking, ["hard:NoSchedule", "evict:NoExecute"]);
    }

    #[test]
    fn eviction_uses_the_first_matching_toleration_and_the_smallest_time() {
        use TolerationOperator::*;
        let mut slow = tol("a", Exists, "", Some(NoExecute));
        slow.toleration_seconds = Some(600);
        let mut fast = tol("b", Exists, "", Some(NoExecute));
        fast.toleration_seconds = Some(60);
        let forever = tol("", Exists, "", None);
        let taints = [taint("a:NoExecute"), taint("b:NoExecute")];
        let e = eviction(&taints, &[slow.clone(), fast.clone(), forever.clone()]).unwrap();
        assert_eq!((e.after, e.taint.key.as_str()), (Duration::from_secs(60), "b"));
        // The catch-all comes first, so it is the one used: no eviction at all.
        assert_eq!(eviction(&taints, &[forever, slow, fast]), None);
        // NoSchedule taints never evict.
        let mut soon = tol("c", Exists, "", None);
        soon.toleration_seconds = Some(5);
        assert_eq!(eviction(&[taint("c:NoSchedule")], &[soon.clone()]), None);
        // Zero or negative seconds evict at once.
        soon.toleration_seconds = Some(-3);
        assert_eq!(
            eviction(&[taint("c:NoExecute")], &[soon]).unwrap().after,
            Duration::ZERO
        );
    }
}
