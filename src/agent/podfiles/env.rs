//! A container's environment from `envFrom` and `env`, and `$(VAR)` in its command and args, resolved in kubelet's order.
//!
//! kubelet's `makeEnvironmentVariables`: `envFrom` sources first, in order, then `env` in
//! order; a `value` is expanded against the variables set before it; a later definition
//! of a name replaces the earlier value. kubelet collects the result in a Go map, so the
//! order it hands the runtime is unspecified; here a replaced variable keeps the position
//! where it was first set, which gives a stable order (and stable instance specs) for the
//! same template and objects.

use std::collections::HashMap;

use super::{Cache, ConfigError, ObjectKind, Objects, PodContext};
use crate::spec::container::{Container, EnvVar, EnvVarSource};
use crate::spec::downward::{resolve_field, resolve_resource};
use crate::spec::expand::expand;
use crate::spec::is_env_var_name;

/// A container's resolved environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// Name and value, each name once.
    pub vars: Vec<(String, String)>,
    /// Keys of `envFrom` objects that could not become variables, for a warning (kubelet's
    /// `InvalidEnvironmentVariableNames` event).
    pub skipped: Vec<SkippedKey>,
}

/// An `envFrom` key left out of the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub kind: ObjectKind,
    pub object: String,
    /// The variable name it would have had (with the prefix).
    pub name: String,
    pub reason: SkipReason,
}

/// Why an `envFrom` key was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Not a valid variable name (with the prefix).
    InvalidName,
    /// Its bytes are not UTF-8 (kubelet reads only a ConfigMap's text `data` here).
    NotText,
}

impl Env {
    fn get(&self, index: &HashMap<String, usize>, name: &str) -> Option<&str> {
        index.get(name).map(|&i| self.vars[i].1.as_str())
    }
}

/// Variables in first-set order with a name index, so a redefinition replaces in place.
#[derive(Default)]
struct Vars {
    env: Env,
    index: HashMap<String, usize>,
}

impl Vars {
    fn set(&mut self, name: &str, value: String) {
        match self.index.get(name) {
            Some(&i) => self.env.vars[i].1 = value,
            None => {
                self.index.insert(name.to_string(), self.env.vars.len());
                self.env.vars.push((name.to_string(), value));
            }
        }
    }

    fn expand(&self, value: &str) -> String {
        expand(value, |name| self.env.get(&self.index, name))
    }
}

/// The environment of `container`, or what kubelet would report as
/// `CreateContainerConfigError`. A missing optional object or key leaves its variable
/// unset (an earlier definition, from `envFrom`, then stays).
pub fn resolve_env(
    container: &Container,
    pod: &PodContext,
    objects: &dyn Objects,
) -> Result<Env, ConfigError> {
    let mut cache = Cache::new(objects);
    let mut vars = Vars::default();
    for from in &container.env_from {
        let (kind, r) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (ObjectKind::ConfigMap, r),
            (None, Some(r)) => (ObjectKind::Secret, r),
            // Validation requires one of them.
            (None, None) => continue,
        };
        let Some(data) = cache.require(kind, &r.name, r.optional)? else {
            continue;
        };
        for (key, bytes) in data {
            let name = format!("{}{key}", from.prefix);
            let skip = |reason| SkippedKey {
                kind,
                object: r.name.clone(),
                name: name.clone(),
                reason,
            };
            if !is_env_var_name(&name) {
                vars.env.skipped.push(skip(SkipReason::InvalidName));
                continue;
            }
            match std::str::from_utf8(bytes) {
                Ok(text) => vars.set(&name, text.to_string()),
                Err(_) => vars.env.skipped.push(skip(SkipReason::NotText)),
            }
        }
    }
    for var in &container.env {
        if let Some(value) = value(var, container, pod, &mut cache, &vars)? {
            vars.set(&var.name, value);
        }
    }
    Ok(vars.env)
}

/// The value of one `env` entry; None leaves it unset.
fn value(
    var: &EnvVar,
    container: &Container,
    pod: &PodContext,
    cache: &mut Cache,
    vars: &Vars,
) -> Result<Option<String>, ConfigError> {
    // As kubelet: a non-empty `value` wins (validation refuses it beside valueFrom).
    match (&var.value, &var.value_from) {
        (Some(v), _) if !v.is_empty() => Ok(Some(vars.expand(v))),
        (_, Some(from)) => value_from(&var.name, from, container, pod, cache),
        (_, None) => Ok(Some(String::new())),
    }
}

fn value_from(
    name: &str,
    from: &EnvVarSource,
    container: &Container,
    pod: &PodContext,
    cache: &mut Cache,
) -> Result<Option<String>, ConfigError> {
    let downward = |source| ConfigError::Downward {
        what: format!("env {name}"),
        source,
    };
    if let Some(f) = &from.field_ref {
        return resolve_field(&f.field_path, pod.facts)
            .map(Some)
            .map_err(downward);
    }
    if let Some(r) = &from.resource_field_ref {
        let target = if r.container_name.is_empty() {
            container
        } else {
            pod.container(&r.container_name)?
        };
        return resolve_resource(r, target, pod.allocatable)
            .map(Some)
            .map_err(downward);
    }
    let (kind, name, key, optional) = if let Some(r) = &from.config_map_key_ref {
        (ObjectKind::ConfigMap, &r.name, &r.key, r.optional)
    } else if let Some(r) = &from.secret_key_ref {
        (ObjectKind::Secret, &r.name, &r.key, r.optional)
    } else {
        // fileKeyRef and other sources the node cannot read: unset, as validation warned.
        return Ok(None);
    };
    let Some(data) = cache.require(kind, name, optional)? else {
        return Ok(None);
    };
    let Some(bytes) = data.get(key) else {
        if optional {
            return Ok(None);
        }
        return Err(ConfigError::KeyNotFound {
            kind,
            name: name.clone(),
            key: key.clone(),
        });
    };
    match String::from_utf8(bytes.clone()) {
        Ok(text) => Ok(Some(text)),
        Err(_) => Err(ConfigError::NotText {
            kind,
            name: name.clone(),
            key: key.clone(),
        }),
    }
}

/// `command` or `args` with `$(VAR)` expanded against the resolved environment, as
/// kubelet's `ExpandContainerCommandAndArgs`.
pub fn expand_command(args: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    args.iter()
        .map(|a| expand(a, |name| vars.get(name).copied()))
        .collect()
}

#[cfg(test)]
mod tests;
