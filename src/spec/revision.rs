//! The revision identity of a pod template, like Kubernetes' `controller-revision-hash`.
//!
//! The template is defaulted, serialized with every map key sorted, and hashed with 64-bit
//! FNV-1a; the hash is written in Kubernetes' vowel-free alphabet (`SafeEncodeString`), so
//! it can never spell a word and fits in a label value. FNV is written out here rather than
//! taken from a crate because the value must never change between builds or versions: it
//! decides whether a rollout happens.

use super::defaults;
use super::pod::PodTemplateSpec;

/// Kubernetes' alphabet for hashes that end up in names and labels.
const ALPHABET: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
/// Characters in a revision hash: 27^10 is about 2^47, plenty for one DaemonSet's history.
const LEN: usize = 10;
/// Bumped only to deliberately give every template a new revision.
const DOMAIN: &[u8] = b"everynode/pod-template/v1\n";

/// The revision hash of a pod template: the same for the same template whatever the field
/// order or formatting of the manifest, different as soon as anything in the template
/// (labels and annotations included) changes.
pub fn revision_hash(template: &PodTemplateSpec) -> String {
    let mut t = template.clone();
    defaults::apply_template(&mut t);
    let value = serde_json::to_value(&t).unwrap_or(serde_json::Value::Null);
    let mut canonical = Vec::with_capacity(1024);
    canonical.extend_from_slice(DOMAIN);
    write_canonical(&value, &mut canonical);
    encode(fnv1a64(&canonical))
}

/// JSON with object keys sorted, whatever map type serde_json was built with.
fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    match v {
        J::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(J::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

fn encode(mut n: u64) -> String {
    let mut s = String::with_capacity(LEN);
    for _ in 0..LEN {
        s.push(char::from(ALPHABET[(n % 27) as usize]));
        n /= 27;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::container::Container;

    fn template(image: &str) -> PodTemplateSpec {
        let mut t = PodTemplateSpec::default();
        t.metadata.labels.insert("app".into(), "agent".into());
        t.spec.containers.push(Container {
            name: "agent".into(),
            image: image.into(),
            ..Container::default()
        });
        t
    }

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn revision_hash_is_pinned() {
        // Changing this value rolls every DaemonSet of every cluster on upgrade.
        assert_eq!(revision_hash(&template("agent:1.0")), "ztkqj9f9d8");
    }

    #[test]
    fn revision_changes_with_the_template_only() {
        let base = revision_hash(&template("agent:1.0"));
        assert_eq!(base.len(), LEN);
        assert!(base.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(base, revision_hash(&template("agent:1.1")));
        let mut annotated = template("agent:1.0");
        annotated
            .metadata
            .annotations
            .insert("kubectl.kubernetes.io/restartedAt".into(), "now".into());
        assert_ne!(base, revision_hash(&annotated));
    }

    #[test]
    fn init_containers_are_part_of_the_revision() {
        let base = revision_hash(&template("agent:1.0"));
        let mut with_init = template("agent:1.0");
        with_init.spec.init_containers.push(Container {
            name: "setup".into(),
            image: "setup:1".into(),
            ..Container::default()
        });
        let one = revision_hash(&with_init);
        assert_ne!(base, one);
        with_init.spec.init_containers[0].restart_policy =
            Some(crate::spec::container::ContainerRestartPolicy::Always);
        assert_ne!(one, revision_hash(&with_init), "a sidecar is another pod");
    }

    #[test]
    fn explicit_defaults_do_not_change_the_revision() {
        let mut explicit = template("agent:1.0");
        explicit.spec.containers[0].image_pull_policy =
            Some(crate::spec::container::PullPolicy::IfNotPresent);
        assert_eq!(revision_hash(&template("agent:1.0")), revision_hash(&explicit));
    }
}
