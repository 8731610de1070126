//! Value objects: parsed once at the edge, so commands only ever carry valid values.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// Why a raw value was refused. The API layer adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("unknown provider \"{given}\"; accepted values: openai, anthropic, google (gemini), aws (bedrock), openrouter, ollama, azure_openai, other")]
    UnknownProvider { given: String },
    #[error("unknown model type \"{given}\"; accepted values: chat, completion, embedding, image, audio, rerank")]
    UnknownModelType { given: String },
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error(
        "must not contain invisible or direction-changing characters (such as U+200B or U+202E)"
    )]
    FormatCharacters,
    #[error("must not mix scripts that look alike (such as Latin and Cyrillic letters)")]
    MixedScripts,
    #[error("may only contain letters, digits, '.', '_' and '-', and must start and end with a letter or digit")]
    InvalidCharacters,
}

fn bounded_text(raw: &str, max: usize, allow_newlines: bool) -> Result<String, ValueError> {
    if raw.trim().is_empty() {
        return Err(ValueError::Empty);
    }
    if raw.chars().count() > max {
        return Err(ValueError::TooLong { max });
    }
    if raw
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err(ValueError::ControlCharacters);
    }
    Ok(raw.to_owned())
}

/// The AI providers aimc knows. Every API family's spelling maps onto one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    Anthropic,
    Google,
    Aws,
    Openrouter,
    Ollama,
    AzureOpenai,
    Other,
}

impl Provider {
    pub const ALL: [Provider; 8] = [
        Provider::Openai,
        Provider::Anthropic,
        Provider::Google,
        Provider::Aws,
        Provider::Openrouter,
        Provider::Ollama,
        Provider::AzureOpenai,
        Provider::Other,
    ];

    /// Accepts the spellings of every seed ("OpenAI", "OPENAI", "gemini", "GOOGLE", "Bedrock", ...).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let folded: String = raw
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_' | '.'))
            .flat_map(char::to_lowercase)
            .collect();
        let provider = match folded.as_str() {
            "openai" => Provider::Openai,
            "anthropic" | "claude" => Provider::Anthropic,
            "google" | "gemini" | "googleai" | "googlegemini" => Provider::Google,
            "aws" | "bedrock" | "awsbedrock" | "amazonbedrock" => Provider::Aws,
            "openrouter" => Provider::Openrouter,
            "ollama" => Provider::Ollama,
            "azureopenai" | "azure" => Provider::AzureOpenai,
            "other" | "custom" => Provider::Other,
            _ => {
                return Err(ValueError::UnknownProvider {
                    given: raw.chars().take(64).collect(),
                })
            }
        };
        Ok(provider)
    }

    /// Canonical identifier, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Google => "google",
            Provider::Aws => "aws",
            Provider::Openrouter => "openrouter",
            Provider::Ollama => "ollama",
            Provider::AzureOpenai => "azure_openai",
            Provider::Other => "other",
        }
    }

    /// How people write the provider's name (and how seed 000 shows it).
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Openai => "OpenAI",
            Provider::Anthropic => "Anthropic",
            Provider::Google => "Google",
            Provider::Aws => "AWS",
            Provider::Openrouter => "OpenRouter",
            Provider::Ollama => "Ollama",
            Provider::AzureOpenai => "Azure OpenAI",
            Provider::Other => "Other",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a model is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    Chat,
    Completion,
    Embedding,
    Image,
    Audio,
    Rerank,
}

impl ModelType {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "chat" => Ok(ModelType::Chat),
            "completion" => Ok(ModelType::Completion),
            "embedding" => Ok(ModelType::Embedding),
            "image" => Ok(ModelType::Image),
            "audio" => Ok(ModelType::Audio),
            "rerank" => Ok(ModelType::Rerank),
            _ => Err(ValueError::UnknownModelType {
                given: raw.chars().take(64).collect(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Chat => "chat",
            ModelType::Completion => "completion",
            ModelType::Embedding => "embedding",
            ModelType::Image => "image",
            ModelType::Audio => "audio",
            ModelType::Rerank => "rerank",
        }
    }
}

/// A provider's model identifier, such as `gpt-4` or `claude-2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelName(String);

impl ModelName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        bounded_text(raw, Self::MAX_CHARS, false).map(ModelName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A credential's human-readable name, unique per workspace regardless of case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialName(String);

impl CredentialName {
    pub const MAX_CHARS: usize = 100;

    /// Names are what people tell credentials apart by, so one that could render like another
    /// is refused: invisible and direction-changing characters (general category Cf, which
    /// holds the bidi overrides and zero-width characters), and letters mixing scripts beyond
    /// what UTS #39 calls moderately restrictive (Latin with Han and kana passes; Latin with a
    /// Cyrillic "а" does not). Compatibility forms are equal through [`CredentialName::key`].
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let name = bounded_text(raw.trim(), Self::MAX_CHARS, false)?;
        if name
            .chars()
            .any(|c| c.general_category() == GeneralCategory::Format)
        {
            return Err(ValueError::FormatCharacters);
        }
        let letters: String = name.nfkc().filter(|c| c.is_alphabetic()).collect();
        if letters.as_str().detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
            return Err(ValueError::MixedScripts);
        }
        Ok(CredentialName(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What uniqueness is decided on: names differing only in case or in Unicode form (NFC
    /// against NFD "é", a fullwidth "Ａ", a "ﬁ" ligature) are the same name. The one place that
    /// folds them.
    pub fn key(&self) -> NameKey {
        let folded: String = self.0.nfkc().collect::<String>().to_lowercase();
        NameKey(folded.nfkc().collect())
    }
}

impl fmt::Display for CredentialName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A credential name as uniqueness sees it; see [`CredentialName::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NameKey(String);

impl NameKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as the registry stores it.
    pub fn stored(raw: String) -> Self {
        NameKey(raw)
    }
}

/// A task a model is assigned to, such as `summarize` or `chat`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskName(String);

impl TaskName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(ValueError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
        {
            return Err(ValueError::InvalidCharacters);
        }
        Ok(TaskName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The system prompt given to the assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SystemPrompt(String);

impl SystemPrompt {
    pub const MAX_CHARS: usize = 20_000;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ValueError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        if raw
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(ValueError::ControlCharacters);
        }
        Ok(SystemPrompt(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key as the keyring returned it (`vault:v1:...` or `local:v1:...`): safe to store and log,
/// useless without the keyring and the credential it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ciphertext(pub String);

impl Ciphertext {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The version of the Vault transit key that sealed it (`vault:v3:…`); none for other
    /// keyrings' ciphertexts.
    pub fn key_version(&self) -> Option<u32> {
        self.0
            .strip_prefix("vault:v")?
            .split_once(':')?
            .0
            .parse()
            .ok()
    }
}

/// What may be shown of a key: `sk-...cdef`, or `****` for keys too short to reveal any part of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHint(String);

impl KeyHint {
    pub fn from_plain(plain: &SecretString) -> Self {
        let chars: Vec<char> = plain.expose_secret().chars().collect();
        if chars.len() <= 8 {
            return KeyHint("****".to_owned());
        }
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        KeyHint(format!("{head}...{tail}"))
    }

    /// A hint as stored, made by [`KeyHint::from_plain`] when the key arrived.
    pub fn stored(raw: String) -> Self {
        KeyHint(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last four characters, for APIs (seed 003) that show only those.
    pub fn last4(&self) -> Option<&str> {
        self.0.split_once("...").map(|(_, tail)| tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_spellings_of_every_seed_map_to_one_provider() {
        for raw in ["OpenAI", "OPENAI", "openai", "open-ai"] {
            assert_eq!(Provider::parse(raw), Ok(Provider::Openai), "{raw}");
        }
        for raw in ["gemini", "GOOGLE", "Google"] {
            assert_eq!(Provider::parse(raw), Ok(Provider::Google), "{raw}");
        }
        assert_eq!(Provider::parse("AWS Bedrock"), Ok(Provider::Aws));
        assert_eq!(Provider::parse("azure_openai"), Ok(Provider::AzureOpenai));
        let err = Provider::parse("xyz").unwrap_err();
        assert!(err.to_string().contains("openai, anthropic"), "{err}");
    }

    #[test]
    fn hint_shows_three_leading_and_four_trailing_characters() {
        let hint =
            KeyHint::from_plain(&SecretString::from("sk-abcdefghijklmnopqrstuvwxyz0123cdef"));
        assert_eq!(hint.as_str(), "sk-...cdef");
        assert_eq!(hint.last4(), Some("cdef"));
    }

    #[test]
    fn hint_of_a_short_key_reveals_nothing() {
        for short in ["", "a", "12345678"] {
            assert_eq!(
                KeyHint::from_plain(&SecretString::from(short)).as_str(),
                "****"
            );
        }
        assert_eq!(
            KeyHint::from_plain(&SecretString::from("123456789")).as_str(),
            "123...6789"
        );
    }

    #[test]
    fn names_differing_only_in_case_have_one_key() {
        let upper = CredentialName::parse("  My OpenAI Config ").unwrap();
        let lower = CredentialName::parse("my openai config").unwrap();
        assert_eq!(upper.as_str(), "My OpenAI Config");
        assert_eq!(upper.key(), lower.key());
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    fn key(raw: &str) -> NameKey {
        CredentialName::parse(raw).unwrap().key()
    }

    #[test]
    fn look_alike_forms_of_one_name_are_one_name() {
        // NFC and NFD "Café", fullwidth letters, a ligature, and case.
        assert_eq!(key("Caf\u{e9}"), key("Cafe\u{301}"));
        assert_eq!(key("ＡＰＩ key"), key("api KEY"));
        assert_eq!(key("\u{fb01}nance"), key("Finance"));
        assert_ne!(key("Prod"), key("Prod 2"));
    }

    #[test]
    fn invisible_direction_changing_and_mixed_script_names_are_refused() {
        for raw in [
            "Caf\u{200b}e",
            "key\u{202e}txt",
            "\u{2066}Prod\u{2069}",
            "a\u{feff}b",
        ] {
            assert_eq!(
                CredentialName::parse(raw),
                Err(ValueError::FormatCharacters),
                "{raw:?}"
            );
        }
        // A Cyrillic "а" among Latin letters.
        assert_eq!(
            CredentialName::parse("C\u{430}fe"),
            Err(ValueError::MixedScripts)
        );
        // Scripts people write together are fine, and so are spaces and punctuation.
        for raw in [
            "OpenAI 本番 キー",
            "Prod OpenAI (eu-west-1) #2",
            "Café",
            "Кафе",
            "東京",
        ] {
            assert!(CredentialName::parse(raw).is_ok(), "{raw:?}");
        }
    }
}
