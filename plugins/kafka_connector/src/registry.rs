//! Confluent Schema Registry (endpoint `schema_registry`): subjects, versions, schemas and
//! compatibility checks, with the host's credentials and the SDK's retries.

use databot_sdk::PluginError;
use databot_sdk::api::{Endpoint, segment};
use serde_json::{Value, json};

fn registry() -> Result<Endpoint, PluginError> {
    Endpoint::from_config("schema_registry")
}

/// `latest`, or a version number (a negative one is what the registry calls latest too).
fn version(text: Option<&str>) -> Result<String, PluginError> {
    let text = text
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or("latest");
    if text == "latest" || text.parse::<i64>().is_ok() {
        Ok(text.to_owned())
    } else {
        Err(PluginError::InvalidInput(format!(
            "version `{text}` is neither `latest` nor a number"
        )))
    }
}

pub fn list_subjects(prefix: Option<&str>, deleted: bool) -> Result<Value, PluginError> {
    let mut query = Vec::new();
    if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
        query.push(("subjectPrefix", prefix.to_owned()));
    }
    if deleted {
        query.push(("deleted", "true".to_owned()));
    }
    let subjects = registry()?.get("/subjects", &query)?;
    let count = subjects.as_array().map_or(0, Vec::len);
    Ok(json!({"count": count, "subjects": subjects}))
}

pub fn list_versions(subject: &str) -> Result<Value, PluginError> {
    let versions = registry()?.get(&format!("/subjects/{}/versions", segment(subject)), &[])?;
    Ok(json!({"subject": subject, "versions": versions}))
}

pub fn get_schema(subject: &str, version_text: Option<&str>) -> Result<Value, PluginError> {
    let version = version(version_text)?;
    let found = registry()?.get(
        &format!(
            "/subjects/{}/versions/{}",
            segment(subject),
            segment(&version)
        ),
        &[],
    )?;
    let schema_type = found
        .get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
        .to_owned();
    let text = found
        .get("schema")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Avro and JSON schemas are JSON documents themselves: hand them back parsed.
    let parsed = match schema_type.as_str() {
        "AVRO" | "JSON" => serde_json::from_str::<Value>(text).ok(),
        _ => None,
    };
    Ok(json!({
        "subject": found.get("subject").cloned().unwrap_or(json!(subject)),
        "id": found.get("id"),
        "version": found.get("version"),
        "schema_type": schema_type,
        "schema": text,
        "schema_parsed": parsed,
        "references": found.get("references").cloned().unwrap_or(json!([])),
    }))
}

pub fn check_compatibility(
    subject: &str,
    schema: &str,
    schema_type: Option<&str>,
    version_text: Option<&str>,
) -> Result<Value, PluginError> {
    let version = version(version_text)?;
    let mut body = json!({"schema": schema});
    if let Some(kind) = schema_type.filter(|k| !k.eq_ignore_ascii_case("AVRO")) {
        body["schemaType"] = json!(kind.to_ascii_uppercase());
    }
    let answer = registry()?
        .call(
            "POST",
            &format!(
                "/compatibility/subjects/{}/versions/{}",
                segment(subject),
                segment(&version)
            ),
            &[("verbose", "true".to_owned())],
            Some(&body),
        )?
        .body;
    Ok(json!({
        "subject": subject,
        "version": version,
        "is_compatible": answer.get("is_compatible").and_then(Value::as_bool).unwrap_or(false),
        "messages": answer.get("messages").cloned().unwrap_or(json!([])),
    }))
}
