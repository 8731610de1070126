//! The committed OpenAPI document, held to its word: every response any scenario receives through
//! the harness is checked against `openapi/openapi.json` (the operation must declare the status,
//! the content type must be the declared one, and the body must match the declared schema with no
//! undeclared fields), so the whole suite doubles as a contract test for generated clients.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
        let text = std::fs::read_to_string(path).expect("openapi/openapi.json is readable");
        serde_json::from_str(&text).expect("openapi/openapi.json is JSON")
    })
}

/// The spec's path template for a concrete path: literal segments beat parameters, so
/// `/ai/llm/available` is not taken for `/ai/llm/{id}`.
fn template_of(path: &str) -> Option<&'static str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for template in spec()["paths"].as_object()?.keys() {
        let parts: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut literals = 0;
        let fits = parts.iter().zip(&segments).all(|(part, segment)| {
            if part.starts_with('{') {
                !segment.is_empty()
            } else {
                literals += 1;
                part == segment
            }
        });
        if fits && best.is_none_or(|(_, most)| literals > most) {
            best = Some((template.as_str(), literals));
        }
    }
    best.map(|(template, _)| template)
}

/// The object schemas of an `allOf` merged into one (properties and required fields), so that
/// closing it to undeclared fields does not make each part refuse the others' fields.
fn merged_all_of(parts: &[Value]) -> Option<Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.strip_prefix("#/components/schemas/")?;
                &spec()["components"]["schemas"][name]
            }
            None => part,
        };
        if let Some(nested) = part.get("allOf").and_then(Value::as_array) {
            let nested = merged_all_of(nested)?;
            properties.extend(nested["properties"].as_object()?.clone());
            required.extend(nested["required"].as_array()?.clone());
            continue;
        }
        properties.extend(part.get("properties")?.as_object()?.clone());
        required.extend(
            part.get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    Some(serde_json::json!({"type": "object", "properties": properties, "required": required}))
}

/// Closes every object schema to undeclared fields, the way a strict generated client reads
/// it, and turns OpenAPI 3.0's `nullable` into JSON Schema.
fn strict(schema: &Value) -> Value {
    if let Some(merged) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .filter(|parts| parts.len() > 1)
        .and_then(|parts| merged_all_of(parts))
    {
        return strict(&merged);
    }
    match schema {
        Value::Object(fields) => {
            let mut out: Map<String, Value> = fields
                .iter()
                .map(|(key, value)| {
                    let value = match key.as_str() {
                        // Examples are data, not schemas.
                        "example" | "examples" | "enum" | "default" => value.clone(),
                        _ => strict(value),
                    };
                    (key.clone(), value)
                })
                .collect();
            if out.contains_key("properties") && !out.contains_key("additionalProperties") {
                out.insert("additionalProperties".into(), Value::Bool(false));
            }
            if out.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(kind)) = out.get("type").cloned() {
                    out.insert("type".into(), serde_json::json!([kind, "null"]));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(strict).collect()),
        other => other.clone(),
    }
}

fn validator(schema: &Value) -> &'static jsonschema::Validator {
    type Cache = Mutex<HashMap<String, &'static jsonschema::Validator>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(found) = cache.lock().unwrap().get(&key) {
        return found;
    }
    let mut root = strict(schema);
    if let Value::Object(fields) = &mut root {
        fields.insert("components".into(), strict(&spec()["components"]));
    }
    let built = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .build(&root)
        .unwrap_or_else(|error| panic!("the spec's schema {schema} does not compile: {error}"));
    let leaked: &'static jsonschema::Validator = Box::leak(Box::new(built));
    cache.lock().unwrap().insert(key, leaked);
    leaked
}

/// Whether a response is one the spec documents. Requests outside the spec's operations (Swagger
/// UI, `/metrics`, unknown routes or methods) are not its business and pass.
pub fn check(
    method: &Method,
    path: &str,
    status: StatusCode,
    content_type: Option<&str>,
    text: &str,
) -> Result<(), String> {
    let Some(template) = template_of(path) else {
        return Ok(());
    };
    let Some(operation) = spec()["paths"][template].get(method.as_str().to_lowercase()) else {
        return Ok(());
    };
    let responses = &operation["responses"];
    let Some(response) = responses
        .get(status.as_str())
        .or_else(|| responses.get("default"))
    else {
        return Err(format!(
            "{method} {template} answered {status}, which the spec does not declare (it declares {})",
            responses
                .as_object()
                .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ));
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return if text.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{method} {template} {status} has a body the spec does not declare: {text}"
            ))
        };
    };
    let media = content_type
        .map(|value| value.split(';').next().unwrap_or(value).trim())
        .unwrap_or("");
    let declared = content
        .iter()
        .find(|(declared, _)| declared.split(';').next().unwrap_or(declared).trim() == media)
        .map(|(_, declared)| declared);
    let Some(declared) = declared else {
        return Err(format!(
            "{method} {template} {status} answered as `{media}`; the spec declares {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    let Some(schema) = declared.get("schema") else {
        return Ok(());
    };
    let body: Value = if media.ends_with("json") {
        serde_json::from_str(text).map_err(|error| {
            format!("{method} {template} {status} is not JSON ({error}): {text}")
        })?
    } else {
        Value::String(text.to_owned())
    };
    let validator = validator(schema);
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|error| format!("at `{}`: {error}", error.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{method} {template} {status} does not match the spec:\n  {}\nbody: {text}",
            errors.join("\n  ")
        ))
    }
}

#[test]
fn templates_prefer_literal_segments() {
    assert_eq!(template_of("/ai/llm/available"), Some("/ai/llm/available"));
    assert_eq!(template_of("/ai/llm/abc?x=1"), Some("/ai/llm/{id}"));
    assert_eq!(template_of("/docs/"), None);
}

#[test]
fn an_undeclared_field_is_refused() {
    let problem = serde_json::json!({"$ref": "#/components/schemas/FieldError"});
    let validator = validator(&problem);
    assert!(validator.is_valid(&serde_json::json!({"field": "a", "message": "b"})));
    assert!(!validator.is_valid(&serde_json::json!({"field": "a", "message": "b", "extra": 1})));
}
