//! Request bodies parsed with serde, so that a refusal names the field at fault
//! (`models[1].isPaid: invalid type: string, expected a boolean`), which poem-openapi's
//! own parser does not do for missing or mistyped fields. The documented schema stays the
//! derived `Object`'s.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, Type};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Separates the field path from the message in a body parse error; see [`field_of`].
const FIELD_SEPARATOR: &str = ": ";

pub struct Checked<T>(pub T);

impl<T: Type> Type for Checked<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry)
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

/// serde reports a missing or unknown field at its parent; name the field itself.
fn offending_field(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "body".to_owned(),
        // serde_path_to_error already ends the path with an unknown field's name.
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_owned()
        }
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// serde reads a JSON array into a struct field by field (`["renamed"]` as `{"name":
/// "renamed"}`), which no client means: wherever the schema says object, the body must hold
/// one. Returns the path of the first place that does not.
fn misplaced_array(
    value: &Value,
    schema: &MetaSchemaRef,
    registry: &Registry,
    path: &str,
) -> Option<String> {
    let schema = match schema {
        MetaSchemaRef::Inline(schema) => schema.as_ref(),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name)?,
    };
    let at = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    match value {
        Value::Array(items) if schema.ty == "array" => {
            let item_schema = schema.items.as_deref()?;
            items.iter().enumerate().find_map(|(index, item)| {
                misplaced_array(item, item_schema, registry, &format!("{path}[{index}]"))
            })
        }
        Value::Array(_) if !schema.properties.is_empty() => Some(if path.is_empty() {
            "body".to_owned()
        } else {
            path.to_owned()
        }),
        Value::Object(fields) => schema.properties.iter().find_map(|(name, property)| {
            misplaced_array(fields.get(*name)?, property, registry, &at(name))
        }),
        _ => None,
    }
}

impl<T: Type + DeserializeOwned> ParseFromJSON for Checked<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        let value = value.unwrap_or_default();
        let mut registry = Registry::new();
        T::register(&mut registry);
        if let Some(field) = misplaced_array(&value, &T::schema_ref(), &registry, "") {
            return Err(ParseError::custom(format!(
                "{field}{FIELD_SEPARATOR}must be a JSON object, not an array"
            )));
        }
        serde_path_to_error::deserialize(value)
            .map(Checked)
            .map_err(|error| {
                let message = without_values(&error.inner().to_string());
                let field = offending_field(&error.path().to_string(), &message);
                ParseError::custom(format!("{field}{FIELD_SEPARATOR}{message}"))
            })
    }
}

/// serde quotes the value it refused (`invalid type: string "sk-…"`): a key sent in the wrong
/// place would come back in the response. The field and the expected type say enough.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        // Numbers too: a key sent as a JSON number is still a key.
        let quoted = [
            ("string \"", '"'),
            ("variant `", '`'),
            ("integer `", '`'),
            ("floating point `", '`'),
        ]
        .iter()
        .filter_map(|(opening, closing)| rest.find(opening).map(|at| (at, *opening, *closing)))
        .min_by_key(|(at, ..)| *at);
        let Some((at, opening, closing)) = quoted else {
            out.push_str(rest);
            return out;
        };
        // "string" or "variant", without the value that followed it.
        out.push_str(&rest[..at + opening.len() - 2]);
        let value = &rest[at + opening.len()..];
        let mut escaped = false;
        let end = value
            .char_indices()
            .find(|(_, c)| {
                let done = !escaped && *c == closing;
                escaped = !escaped && *c == '\\';
                done
            })
            .map_or(value.len(), |(index, _)| index + 1);
        rest = &value[end..];
    }
}

/// A refusal of one field, in the form [`field_of`] splits again.
pub(crate) fn field_message(field: &str, message: &str) -> String {
    format!("{field}{FIELD_SEPARATOR}{message}")
}

/// Splits a body parse error produced above back into field and message.
pub(crate) fn field_of(reason: &str) -> Option<(&str, &str)> {
    // poem-openapi prefixes the type name: `failed to parse "CreateApiKeyRequest": <ours>`.
    let reason = match reason.strip_prefix("failed to parse \"") {
        Some(rest) => rest
            .split_once("\": ")
            .map(|(_, ours)| ours)
            .unwrap_or(rest),
        None => reason,
    };
    let (field, message) = reason.split_once(FIELD_SEPARATOR)?;
    (!field.contains(' ')).then_some((field, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_values_are_not_repeated_back() {
        assert_eq!(
            without_values(
                r#"invalid type: string "sk-live-\"quoted\"-9876", expected struct ProviderKeyInput"#
            ),
            "invalid type: string, expected struct ProviderKeyInput"
        );
        assert_eq!(
            without_values("unknown variant `sk-live-9876`, expected `chat` or `embedding`"),
            "unknown variant, expected `chat` or `embedding`"
        );
        assert_eq!(
            without_values("missing field `isPaid`"),
            "missing field `isPaid`"
        );
    }

    #[test]
    fn missing_and_unknown_fields_are_named_by_their_full_path() {
        assert_eq!(
            offending_field("models[0]", "missing field `isPaid`"),
            "models[0].isPaid"
        );
        assert_eq!(
            offending_field(".", "unknown field `systemPrompt`, expected `models`"),
            "systemPrompt"
        );
        assert_eq!(
            offending_field("models[2].isPaid", "invalid type: string \"yes\""),
            "models[2].isPaid"
        );
        assert_eq!(offending_field(".", "invalid type: sequence"), "body");
        assert_eq!(
            offending_field("mistral", "unknown field `mistral`, expected one of"),
            "mistral"
        );
    }

    #[test]
    fn refused_numbers_are_not_repeated_back_either() {
        assert_eq!(
            without_values("invalid type: integer `4111111111111111`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_values("invalid type: floating point `4111111111111111.5`, expected a string"),
            "invalid type: floating point, expected a string"
        );
    }

    #[test]
    fn the_field_is_recovered_from_poem_openapis_wrapped_message() {
        assert_eq!(
            field_of("failed to parse \"CreateApiKeyRequest\": api_key: missing field `api_key`"),
            Some(("api_key", "missing field `api_key`"))
        );
        assert_eq!(
            field_of("models[0].isPaid: invalid type"),
            Some(("models[0].isPaid", "invalid type"))
        );
    }
}
