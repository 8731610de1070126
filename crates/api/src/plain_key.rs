//! Plain keys as families B to E receive them over TLS.

use secrecy::SecretString;

use crate::problem::ApiError;

/// The most a plain key may hold; real keys are far shorter.
pub const MAX_KEY_CHARS: usize = 4096;

/// A plain key: surrounding whitespace removed, not empty, bounded. `field` names it in a
/// refusal, which never repeats the key.
pub fn parse(field: &str, raw: &str) -> Result<SecretString, ApiError> {
    let key = raw.trim();
    if key.is_empty() {
        return Err(ApiError::invalid_field(field, "must not be empty"));
    }
    if key.chars().count() > MAX_KEY_CHARS {
        return Err(ApiError::invalid_field(
            field,
            format!("must be at most {MAX_KEY_CHARS} characters"),
        ));
    }
    Ok(SecretString::from(key))
}
