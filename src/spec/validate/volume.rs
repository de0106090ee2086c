//! Validation of volume sources: host paths, ConfigMaps, Secrets, the downward API, projections and emptyDir.

use std::collections::BTreeSet;

use super::refs::{field_ref, file_mode, object_key, object_name, quantity, resource_field_ref, volume_path};
use crate::spec::container::Container;
use crate::spec::downward::Usage;
use crate::spec::issue::{FieldPath, Issues};
use crate::spec::pod::{HostPathVolumeSource, Volume};
use crate::spec::volume::{DownwardAPIVolumeFile, EmptyDirVolumeSource, KeyToPath, ProjectedVolumeSource};

/// Checks the one source of a volume; false when it has none everynode provides (only
/// unsupported ones such as nfs), so mounts of it can be reported as not honoured.
pub(crate) fn source(out: &mut Issues, p: &FieldPath, v: &Volume, containers: &[Container]) -> bool {
    let sources = v.source_names();
    match sources.len() {
        0 => {
            out.required(p).hint(
                "must specify a volume type: hostPath, configMap, secret, downwardAPI, projected or emptyDir",
            );
            return true;
        }
        1 => {}
        _ => {
            out.err(p, "Forbidden: may not specify more than 1 volume type")
                .hint(format!("this volume sets {}", sources.join(", ")));
        }
    }
    if let Some(hp) = &v.host_path {
        host_path(out, &p.child("hostPath"), hp);
    }
    if let Some(cm) = &v.config_map {
        let cp = p.child("configMap");
        object_name(out, &cp.child("name"), &cm.name);
        items(out, &cp.child("items"), &cm.items);
        file_mode(out, &cp.child("defaultMode"), cm.default_mode);
    }
    if let Some(s) = &v.secret {
        let sp = p.child("secret");
        object_name(out, &sp.child("secretName"), &s.secret_name);
        items(out, &sp.child("items"), &s.items);
        file_mode(out, &sp.child("defaultMode"), s.default_mode);
    }
    if let Some(d) = &v.downward_api {
        let dp = p.child("downwardAPI");
        downward_items(out, &dp.child("items"), &d.items, containers);
        file_mode(out, &dp.child("defaultMode"), d.default_mode);
    }
    if let Some(pr) = &v.projected {
        projected(out, &p.child("projected"), pr, containers);
    }
    if let Some(e) = &v.empty_dir {
        empty_dir(out, &p.child("emptyDir"), e);
    }
    sources.len() > v.unsupported.len()
}

fn host_path(out: &mut Issues, p: &FieldPath, hp: &HostPathVolumeSource) {
    let path = p.child("path");
    if hp.path.is_empty() {
        out.required(&path);
    } else if hp.path.split('/').any(|seg| seg == "..") {
        out.invalid(&path, &hp.path, "must not contain '..'");
    } else if !hp.path.starts_with('/') {
        out.invalid(&path, &hp.path, "must be an absolute path")
            .hint("a host path is resolved on each node; start it with /");
    }
}

fn items(out: &mut Issues, p: &FieldPath, items: &[KeyToPath]) {
    for (i, item) in items.iter().enumerate() {
        let ip = p.index(i);
        object_key(out, &ip.child("key"), &item.key);
        volume_path(out, &ip.child("path"), &item.path);
        if let Some(mode) = item.mode {
            file_mode(out, &ip.child("mode"), mode);
        }
    }
}

fn downward_items(
    out: &mut Issues,
    p: &FieldPath,
    items: &[DownwardAPIVolumeFile],
    containers: &[Container],
) {
    for (i, item) in items.iter().enumerate() {
        let ip = p.index(i);
        volume_path(out, &ip.child("path"), &item.path);
        match (&item.field_ref, &item.resource_field_ref) {
            (Some(_), Some(_)) => {
                out.invalid(
                    &ip,
                    "",
                    "fieldRef and resourceFieldRef can not be specified simultaneously",
                );
            }
            (Some(f), None) => field_ref(out, &ip.child("fieldRef"), f, Usage::Volume),
            (None, Some(r)) => {
                resource_field_ref(out, &ip.child("resourceFieldRef"), r, containers, Usage::Volume);
            }
            (None, None) => {
                out.required(&ip)
                    .hint("one of fieldRef and resourceFieldRef is required");
            }
        }
        if let Some(mode) = item.mode {
            file_mode(out, &ip.child("mode"), mode);
        }
    }
}

fn projected(out: &mut Issues, p: &FieldPath, pr: &ProjectedVolumeSource, containers: &[Container]) {
    file_mode(out, &p.child("defaultMode"), pr.default_mode);
    // Every source writes into the same directory, so two items may not claim one path.
    let mut paths = BTreeSet::new();
    for (i, s) in pr.sources.iter().enumerate() {
        let sp = p.child("sources").index(i);
        let set = [
            s.config_map.is_some(),
            s.secret.is_some(),
            s.downward_api.is_some(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
            + s.unsupported.len();
        match set {
            0 => {
                out.required(&sp).hint("must specify exactly 1 volume type");
            }
            1 => {}
            _ => {
                out.err(
                    &sp,
                    "Forbidden: may not specify more than 1 volume type per source",
                );
            }
        }
        let mut claim = |out: &mut Issues, ip: FieldPath, path: &str| {
            if !path.is_empty() && !paths.insert(path.to_string()) {
                out.invalid(&ip.child("path"), path, "conflicting duplicate paths");
            }
        };
        if let Some(cm) = &s.config_map {
            let cp = sp.child("configMap");
            object_name(out, &cp.child("name"), &cm.name);
            items(out, &cp.child("items"), &cm.items);
            for (j, item) in cm.items.iter().enumerate() {
                claim(out, cp.child("items").index(j), &item.path);
            }
        }
        if let Some(sec) = &s.secret {
            let cp = sp.child("secret");
            object_name(out, &cp.child("name"), &sec.name);
            items(out, &cp.child("items"), &sec.items);
            for (j, item) in sec.items.iter().enumerate() {
                claim(out, cp.child("items").index(j), &item.path);
            }
        }
        if let Some(d) = &s.downward_api {
            let dp = sp.child("downwardAPI").child("items");
            downward_items(out, &dp, &d.items, containers);
            for (j, item) in d.items.iter().enumerate() {
                claim(out, dp.index(j), &item.path);
            }
        }
    }
}

fn empty_dir(out: &mut Issues, p: &FieldPath, e: &EmptyDirVolumeSource) {
    if let Some(limit) = &e.size_limit {
        quantity(out, &p.child("sizeLimit"), "memory", limit);
        if e.medium != crate::spec::volume::StorageMedium::Memory {
            // kubelet evicts a pod over it; the agent does not watch disk use.
            out.warn(
                &p.child("sizeLimit"),
                "not honoured by everynode on disk: nothing stops the volume growing past it (with medium: Memory it is the tmpfs size)",
            );
        }
    }
}
