//! `get`, `describe` and `delete` for ConfigMaps and Secrets, by namespace; Secret values only in `-o yaml|json` with the admin token.

use std::process::ExitCode;

use serde_json::{json, Value};

use super::client::{Client, Target};
use super::output::{self, OutputFormat};
use crate::api::configs::SecretView;
use crate::control::configs::{ConfigKind, ConfigMapRecord};

/// Which namespaces a command looks at: one (`-n`, default `default`) or all (`-A`).
#[derive(Debug, Clone)]
pub enum Scope {
    One(String),
    All,
}

impl Scope {
    pub fn new(namespace: Option<String>, all: bool) -> Scope {
        if all {
            Scope::All
        } else {
            Scope::One(namespace.unwrap_or_else(crate::spec::meta::default_namespace))
        }
    }

    fn query(&self) -> String {
        match self {
            Scope::One(ns) => format!("?namespace={ns}"),
            Scope::All => "?".into(),
        }
    }

    fn namespace(&self) -> &str {
        match self {
            Scope::One(ns) => ns,
            Scope::All => "default",
        }
    }
}

/// The one object asked for by name, else a `kind: List` of them, as kubectl prints them.
fn one_or_list(mut items: Vec<Value>, one: bool) -> Value {
    if one && items.len() == 1 {
        items.remove(0)
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    }
}

pub async fn get_config_maps(
    server: &Target,
    name: Option<&str>,
    scope: &Scope,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let records: Vec<ConfigMapRecord> = match name {
        Some(n) => vec![
            client
                .get(&format!("/v1/configmaps/{}/{n}", scope.namespace()))
                .await?,
        ],
        None => client.get(&format!("/v1/configmaps{}", scope.query())).await?,
    };
    match format {
        OutputFormat::Json | OutputFormat::Yaml => {
            let items: Vec<Value> = records
                .iter()
                .map(|r| serde_json::to_value(&r.config_map))
                .collect::<Result<_, _>>()?;
            output::print_structured(&one_or_list(items, name.is_some()), format)?;
        }
        OutputFormat::Table | OutputFormat::Wide => {
            if records.is_empty() {
                eprintln!("No configmaps found{}.", where_(scope));
                return Ok(ExitCode::SUCCESS);
            }
            let rows = records
                .iter()
                .map(|r| {
                    let cm = &r.config_map;
                    row(
                        scope,
                        &cm.metadata.namespace,
                        vec![
                            cm.metadata.name.clone(),
                            (cm.data.len() + cm.binary_data.len()).to_string(),
                            output::age(Some(r.created_at)),
                        ],
                    )
                })
                .collect::<Vec<_>>();
            print!(
                "{}",
                output::table(&header(scope, &["NAME", "DATA", "AGE"]), &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get_secrets(
    server: &Target,
    name: Option<&str>,
    scope: &Scope,
    format: OutputFormat,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(server)?;
    let structured = matches!(format, OutputFormat::Json | OutputFormat::Yaml);
    let path = match name {
        Some(n) => format!("/v1/secrets/{}/{n}?", scope.namespace()),
        None => format!("/v1/secrets{}&", scope.query()),
    };
    let views = secrets(&client, &path, name.is_some(), structured).await?;
    if structured {
        let items: Vec<Value> = views.iter().map(secret_json).collect();
        output::print_structured(&one_or_list(items, name.is_some()), format)?;
        return Ok(ExitCode::SUCCESS);
    }
    if views.is_empty() {
        eprintln!("No secrets found{}.", where_(scope));
        return Ok(ExitCode::SUCCESS);
    }
    let rows = views
        .iter()
        .map(|v| {
            row(
                scope,
                &v.metadata.namespace,
                vec![
                    v.metadata.name.clone(),
                    v.type_.clone(),
                    v.sizes.len().to_string(),
                    output::age(Some(v.created_at)),
                ],
            )
        })
        .collect::<Vec<_>>();
    print!(
        "{}",
        output::table(&header(scope, &["NAME", "TYPE", "DATA", "AGE"]), &rows)
    );
    Ok(ExitCode::SUCCESS)
}

/// Fetches Secrets, with their values when `values` and the token allows; the read-only token
/// gets keys and sizes, and a note says so.
async fn secrets(client: &Client, path: &str, one: bool, values: bool) -> anyhow::Result<Vec<SecretView>> {
    let fetch = |with_values: bool| {
        let path = format!("{path}values={with_values}");
        async move {
            if one {
                client.get::<SecretView>(&path).await.map(|v| vec![v])
            } else {
                client.get::<Vec<SecretView>>(&path).await
            }
        }
    };
    if !values {
        return fetch(false).await;
    }
    match fetch(true).await {
        Ok(v) => Ok(v),
        Err(e) if format!("{e:#}").contains("read-only token") => {
            eprintln!("note: the read-only token shows Secret keys and sizes only (dataSizes); use the admin token for the values");
            fetch(false).await
        }
        Err(e) => Err(e),
    }
}

/// A Secret as Kubernetes prints it; without values, `dataSizes` stands where `data` would.
fn secret_json(v: &SecretView) -> Value {
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": v.metadata,
        "type": v.type_,
    });
    match &v.data {
        Some(data) => out["data"] = json!(data),
        None => out["dataSizes"] = json!(v.sizes),
    }
    if let Some(immutable) = v.immutable {
        out["immutable"] = json!(immutable);
    }
    out
}

fn where_(scope: &Scope) -> String {
    match scope {
        Scope::One(ns) => format!(" in {ns} namespace"),
        Scope::All => String::new(),
    }
}

fn header<'a>(scope: &Scope, columns: &[&'a str]) -> Vec<&'a str> {
    let mut h = Vec::new();
    if matches!(scope, Scope::All) {
        h.push("NAMESPACE");
    }
    h.extend_from_slice(columns);
    h
}

fn row(scope: &Scope, namespace: &str, mut cells: Vec<String>) -> Vec<String> {
    if matches!(scope, Scope::All) {
        cells.insert(0, namespace.to_string());
    }
    cells
}

fn describe_meta(out: &mut String, meta: &crate::spec::meta::ObjectMeta) {
    let map = |m: &std::collections::BTreeMap<String, String>| {
        if m.is_empty() {
            "<none>".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n              ")
        }
    };
    out.push_str(&format!("Name:         {}\n", meta.name));
    out.push_str(&format!("Namespace:    {}\n", meta.namespace));
    out.push_str(&format!("Labels:       {}\n", map(&meta.labels)));
    out.push_str(&format!("Annotations:  {}\n", map(&meta.annotations)));
}

pub async fn describe_config_map(server: &Target, name: &str, scope: &Scope) -> anyhow::Result<ExitCode> {
    let r: ConfigMapRecord = Client::new(server)?
        .get(&format!("/v1/configmaps/{}/{name}", scope.namespace()))
        .await?;
    let cm = &r.config_map;
    let mut out = String::new();
    describe_meta(&mut out, &cm.metadata);
    out.push_str(&format!("Age:          {}\n", output::age(Some(r.created_at))));
    out.push_str("\nData\n====\n");
    for (k, v) in &cm.data {
        out.push_str(&format!("{k}:\n----\n{v}\n"));
        if !v.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str("\nBinaryData\n====\n");
    for (k, v) in cm.bytes().iter().filter(|(k, _)| cm.binary_data.contains_key(*k)) {
        out.push_str(&format!("{k}: {} bytes\n", v.len()));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub async fn describe_secret(server: &Target, name: &str, scope: &Scope) -> anyhow::Result<ExitCode> {
    let v: SecretView = Client::new(server)?
        .get(&format!("/v1/secrets/{}/{name}", scope.namespace()))
        .await?;
    let mut out = String::new();
    describe_meta(&mut out, &v.metadata);
    out.push_str(&format!("\nType:  {}\n\nData\n====\n", v.type_));
    let width = v.sizes.keys().map(String::len).max().unwrap_or(0) + 1;
    for (k, n) in &v.sizes {
        out.push_str(&format!("{:<width$}  {n} bytes\n", format!("{k}:")));
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(
    server: &Target,
    kind: ConfigKind,
    name: &str,
    scope: &Scope,
) -> anyhow::Result<ExitCode> {
    let path = match kind {
        ConfigKind::ConfigMap => "configmaps",
        ConfigKind::Secret => "secrets",
    };
    Client::new(server)?
        .delete(&format!("/v1/{path}/{}/{name}", scope.namespace()))
        .await?;
    println!("{} \"{name}\" deleted", kind.as_str());
    Ok(ExitCode::SUCCESS)
}
