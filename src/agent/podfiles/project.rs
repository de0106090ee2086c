//! configMap, secret, downwardAPI and projected volumes as the files kubelet would write for them.

use std::collections::BTreeMap;

use super::{Cache, ConfigError, ObjectKind, Objects, PodContext};
use crate::spec::downward::{resolve_field, resolve_resource};
use crate::spec::pod::Volume;
use crate::spec::volume::{DownwardAPIVolumeFile, KeyToPath};

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Relative to the volume root, cleaned (`a//./b` is `a/b`); may name subdirectories.
    pub path: String,
    pub data: Vec<u8>,
    /// Permission bits (`0o644`).
    pub mode: u32,
}

/// Files by path: a later item for the same path replaces an earlier one, as in kubelet's
/// payload map.
type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// The files of a configMap, secret, downwardAPI or projected volume, sorted by path;
/// None for other volumes (hostPath, emptyDir...), which have no files to write.
///
/// Kubernetes' rules: without items every key becomes a file named after it; with items
/// only those keys, at their paths; an item's mode wins over `defaultMode`. A missing
/// object or key is an error unless the source is `optional`: then a missing object gives
/// no files (the volume is still mounted, empty) and a missing key is skipped.
pub fn project(
    volume: &Volume,
    pod: &PodContext,
    objects: &dyn Objects,
) -> Result<Option<Vec<File>>, ConfigError> {
    let mut cache = Cache::new(objects);
    let mut payload = Payload::new();
    if let Some(cm) = &volume.config_map {
        let source = Keys {
            kind: ObjectKind::ConfigMap,
            name: &cm.name,
            items: &cm.items,
            optional: cm.optional,
        };
        source.add(&mut cache, mode(cm.default_mode), &mut payload)?;
    } else if let Some(s) = &volume.secret {
        let source = Keys {
            kind: ObjectKind::Secret,
            name: &s.secret_name,
            items: &s.items,
            optional: s.optional,
        };
        source.add(&mut cache, mode(s.default_mode), &mut payload)?;
    } else if let Some(d) = &volume.downward_api {
        downward(&d.items, pod, mode(d.default_mode), &mut payload)?;
    } else if let Some(p) = &volume.projected {
        let default_mode = mode(p.default_mode);
        // Sources the node cannot provide (serviceAccountToken...) are skipped; validation
        // warned about them.
        for source in &p.sources {
            if let Some(cm) = &source.config_map {
                let keys = Keys {
                    kind: ObjectKind::ConfigMap,
                    name: &cm.name,
                    items: &cm.items,
                    optional: cm.optional,
                };
                keys.add(&mut cache, default_mode, &mut payload)?;
            }
            if let Some(s) = &source.secret {
                let keys = Keys {
                    kind: ObjectKind::Secret,
                    name: &s.name,
                    items: &s.items,
                    optional: s.optional,
                };
                keys.add(&mut cache, default_mode, &mut payload)?;
            }
            if let Some(d) = &source.downward_api {
                downward(&d.items, pod, default_mode, &mut payload)?;
            }
        }
    } else {
        return Ok(None);
    }
    let files = payload
        .into_iter()
        .map(|(path, (data, mode))| File { path, data, mode })
        .collect();
    Ok(Some(files))
}

/// A mode as the manifest gives it; validation keeps it within 0..=0o777.
fn mode(m: i32) -> u32 {
    m.clamp(0, 0o777).unsigned_abs()
}

/// The keys of one ConfigMap or Secret that a volume (or projected source) wants.
struct Keys<'a> {
    kind: ObjectKind,
    name: &'a str,
    items: &'a [KeyToPath],
    optional: bool,
}

impl Keys<'_> {
    fn add(&self, cache: &mut Cache, default_mode: u32, payload: &mut Payload) -> Result<(), ConfigError> {
        let Some(data) = cache.require(self.kind, self.name, self.optional)? else {
            return Ok(());
        };
        if self.items.is_empty() {
            for (key, value) in data {
                payload.insert(key.clone(), (value.clone(), default_mode));
            }
            return Ok(());
        }
        for item in self.items {
            let Some(value) = data.get(&item.key) else {
                if self.optional {
                    continue;
                }
                return Err(ConfigError::KeyNotFound {
                    kind: self.kind,
                    name: self.name.into(),
                    key: item.key.clone(),
                });
            };
            let mode = item.mode.map_or(default_mode, mode);
            payload.insert(clean(&item.path), (value.clone(), mode));
        }
        Ok(())
    }
}

fn downward(
    items: &[DownwardAPIVolumeFile],
    pod: &PodContext,
    default_mode: u32,
    payload: &mut Payload,
) -> Result<(), ConfigError> {
    for item in items {
        let what = || format!("file {}", item.path);
        let value = if let Some(f) = &item.field_ref {
            resolve_field(&f.field_path, pod.facts)
        } else if let Some(r) = &item.resource_field_ref {
            resolve_resource(r, pod.container(&r.container_name)?, pod.allocatable)
        } else {
            // Validation requires one of the two; kubelet writes an empty file without.
            Ok(String::new())
        };
        let value = value.map_err(|source| ConfigError::Downward { what: what(), source })?;
        let mode = item.mode.map_or(default_mode, mode);
        payload.insert(clean(&item.path), (value.into_bytes(), mode));
    }
    Ok(())
}

/// Go's `filepath.Clean` for the relative paths validation lets through: empty and `.`
/// segments dropped.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests;
