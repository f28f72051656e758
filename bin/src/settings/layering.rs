//! Reading the textual sources: one-field documents for complete error lists, line and column
//! of an error, environment variable names, setting one field from text.

use super::{ENV_PREFIX, ENV_SEPARATOR};
use switchboard_core::config::ConfigError;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Splits a document into documents of one field each (one per key of each top-level table,
/// or the whole entry for a top-level key that is not a table).
pub(super) fn one_field_documents(root: Spanned<DeTable<'_>>) -> Vec<Spanned<DeTable<'_>>> {
    let span = root.span();
    let mut docs = Vec::new();
    for (key, value) in root.into_inner() {
        let value_span = value.span();
        match value.into_inner() {
            DeValue::Table(fields) if !fields.is_empty() => {
                for (field, field_value) in fields {
                    let mut section = DeTable::new();
                    section.insert(field, field_value);
                    let mut doc = DeTable::new();
                    doc.insert(
                        key.clone(),
                        Spanned::new(value_span.clone(), DeValue::Table(section)),
                    );
                    docs.push(Spanned::new(span.clone(), doc));
                }
            }
            other => {
                let mut doc = DeTable::new();
                doc.insert(key, Spanned::new(value_span, other));
                docs.push(Spanned::new(span.clone(), doc));
            }
        }
    }
    docs
}

/// A deserialization error as a [`ConfigError`], with the byte offset it points at (for
/// sorting) and its line and column in the message.
pub(super) fn document_error(
    text: &str,
    error: &serde_path_to_error::Error<toml::de::Error>,
) -> (usize, ConfigError) {
    let path = error.path().to_string();
    let field = if path == "." { String::new() } else { path };
    let inner = error.inner();
    let mut message = inner.message().trim_end().to_owned();
    let offset = match inner.span() {
        Some(span) => {
            message.push_str(&line_and_column(text, span.start));
            span.start
        }
        None => usize::MAX,
    };
    (offset, ConfigError::new(field, message))
}

/// ` (line L, column C)` for a byte offset, both counted from 1.
pub(super) fn line_and_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!(" (line {line}, column {column})")
}

/// `SWITCHBOARD_RPC__LISTEN` → `["rpc", "listen"]`; `None` if the name has no field part.
pub(super) fn env_path(name: &str) -> Option<Vec<String>> {
    let rest = name.strip_prefix(ENV_PREFIX)?;
    let path: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    (path.len() >= 2 && path.iter().all(|s| !s.is_empty())).then_some(path)
}

/// Sets `path` in a serialized configuration to `raw`, typed like the value it replaces.
/// Whether the field exists is left to deserialization, whose `deny_unknown_fields` knows
/// best and lists the valid names.
pub(super) fn set_in_table(
    table: &mut toml::Table,
    path: &[&str],
    raw: &str,
) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty field path".to_owned());
    };
    let mut current = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            other => {
                return Err(format!(
                    "{} is {}, not a section",
                    path[..=depth].join("."),
                    describe_type(other)
                ));
            }
        };
    }
    let value = match current.get(*last) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(existing) => match raw.trim().parse::<toml::Value>() {
            Ok(value) if value.same_type(existing) => value,
            Ok(toml::Value::Integer(i)) if existing.is_float() => toml::Value::Float(i as f64),
            _ => return Err(format!("expected {}, got {raw:?}", describe_type(existing))),
        },
        // Absent from the serialized form (an unset optional field, or an unknown name):
        // take TOML if it parses, else the text itself.
        None => raw
            .trim()
            .parse::<toml::Value>()
            .unwrap_or_else(|_| toml::Value::String(raw.to_owned())),
    };
    current.insert(last.to_string(), value);
    Ok(())
}

pub(super) fn describe_type(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a TOML date-time",
        toml::Value::Array(_) => "a TOML array such as [1, 2]",
        toml::Value::Table(_) => "a TOML inline table such as { key = \"value\" }",
    }
}
