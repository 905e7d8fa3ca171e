//! `jit config`: read and set the universe's configuration (`.jit/config.toml`) by dotted keys,
//! as `git config` does — `jit config user.name`, `jit config user.name "Ada"`, `--unset`,
//! `--list`. A change is checked against the configuration's schema before it is written
//! (durably, replacing the file whole), so an unknown key or a wrong type is refused and the
//! file never holds what the next command could not read.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::output::Output;

fn invalid(message: String) -> anyhow::Error {
    jit_kernel::Error::InvalidInput(message).into()
}

fn load(path: &Path) -> Result<toml::Table> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .parse::<toml::Table>()
            .with_context(|| format!("{} is not valid TOML", path.display()))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Every `key = value` leaf, by dotted key.
fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => leaves(&key, inner, out),
            toml::Value::String(text) => out.push((key, text.clone())),
            other => out.push((key, other.to_string())),
        }
    }
}

/// Runs `jit config`.
pub(crate) fn config(
    out: &Output,
    jit_dir: &Path,
    key: Option<&str>,
    value: Option<&str>,
    unset: bool,
) -> Result<ExitCode> {
    let path = jit_dir.join("config.toml");
    let mut table = load(&path)?;
    let Some(key) = key else {
        let mut all = Vec::new();
        leaves("", &table, &mut all);
        let rows: serde_json::Map<String, serde_json::Value> =
            all.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        return out.emit(serde_json::Value::Object(rows), || {
            all.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n")
        });
    };
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(format!(
            "{key:?} is not a key: use section.name, e.g. user.name or remotes.origin.endpoint"
        )));
    }
    if value.is_none() && !unset {
        let mut current: Option<&toml::Value> = None;
        let mut scope = &table;
        for (i, part) in parts.iter().enumerate() {
            match scope.get(*part) {
                Some(toml::Value::Table(inner)) if i + 1 < parts.len() => scope = inner,
                Some(leaf) if i + 1 == parts.len() => current = Some(leaf),
                _ => break,
            }
        }
        let Some(current) = current else {
            // As git: an unset key prints nothing and fails.
            return Ok(ExitCode::FAILURE);
        };
        let text = match current {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return out.emit(json!({ "key": key, "value": text }), || text.clone());
    }
    // Walk to the leaf's table, making sections as needed.
    let mut scope = &mut table;
    for part in &parts[..parts.len() - 1] {
        let entry = scope
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        scope = entry
            .as_table_mut()
            .ok_or_else(|| invalid(format!("{part} in {key} is a value, not a section")))?;
    }
    let leaf = parts[parts.len() - 1].to_owned();
    match value {
        Some(value) if !unset => {
            scope.insert(leaf, toml::Value::String(value.to_owned()));
        }
        _ => {
            if scope.remove(&leaf).is_none() {
                return Err(invalid(format!("{key} is not set")));
            }
        }
    }
    let text = toml::to_string(&table).context("cannot write the configuration")?;
    toml::from_str::<jit_kernel::repo::Config>(&text)
        .map_err(|e| invalid(format!("{key} cannot be set: {}", e.message())))?;
    jit_kernel::repo::write_durably(&path, text.as_bytes())?;
    out.emit(json!({ "key": key, "value": value }), String::new)
}
