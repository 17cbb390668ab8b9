//! The optional TOML file beneath flags and environment variables.
//!
//! Its keys are the flag names (`commit-interval = "500ms"`; `_` works as `-`), so
//! there is one list of settings and one place documenting them: `--help`. The file
//! becomes arguments placed before the command line's own, for the settings that
//! the command line and environment left at their defaults; clap then parses and
//! checks them like any other.

use super::{Config, ConfigError};
use clap::{parser::ValueSource, ArgMatches, Args};
use std::path::Path;

/// Turns the TOML file at `path` into `--flag=value` arguments for every setting
/// that `matches` (the parsed `serve` arguments) left at its default.
pub fn arguments(path: &Path, matches: &ArgMatches) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::one(format!("cannot read config file {}: {e}", path.display()))
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::one(format!("config file {}: {}", path.display(), e.message()))
    })?;
    let settings = Config::augment_args(clap::Command::new("serve"));
    let mut out = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(arg) = settings
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()) && flag != "config")
        else {
            return Err(ConfigError::one(format!(
                "config file {}: unknown setting {key:?} (see kafka-gateway serve --help)",
                path.display()
            )));
        };
        if !matches!(
            matches.value_source(arg.get_id().as_str()),
            None | Some(ValueSource::DefaultValue)
        ) {
            continue;
        }
        for v in values(&key, value, path)? {
            out.push(format!("--{flag}={v}"));
        }
    }
    Ok(out)
}

fn values(key: &str, value: toml::Value, path: &Path) -> Result<Vec<String>, ConfigError> {
    use toml::Value;
    let scalar = |v: Value| match v {
        Value::String(s) => Ok(s),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(ConfigError::one(format!(
            "config file {}: {key:?} cannot be a {}",
            path.display(),
            other.type_str()
        ))),
    };
    match value {
        // `[kafka-config]` tables give librdkafka properties as keys.
        Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| scalar(v).map(|v| format!("{k}={v}")))
            .collect(),
        Value::Array(items) => items.into_iter().map(scalar).collect(),
        v => scalar(v).map(|s| vec![s]),
    }
}
