//! Closed sets of words (providers, model types, key sources) as enums in the spec, while the
//! handlers keep parsing them: each API family spells its providers its own way and refuses an
//! unknown one with a message naming its own field, which a derived enum's parser would not.
//! The server accepts what it always did (A's providers in any capitalisation); the spec names
//! the canonical spellings, the ones it answers with, so generated clients get enums.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// One closed set: its name in the spec and its words.
pub trait Spelling: Send + Sync + 'static {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const VALUES: &'static [&'static str];
}

/// A word of the set `S`, as the client sent it or as the service answers.
pub struct Spelled<S>(pub String, PhantomData<S>);

impl<S> Spelled<S> {
    pub fn new(word: impl Into<String>) -> Self {
        Spelled(word.into(), PhantomData)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S> std::fmt::Debug for Spelled<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S> Clone for Spelled<S> {
    fn clone(&self) -> Self {
        Spelled::new(self.0.clone())
    }
}

impl<S: Spelling> Type for Spelled<S> {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        S::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(S::NAME.to_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(S::NAME.to_owned(), |_| MetaSchema {
            description: Some(S::DESCRIPTION),
            enum_items: S::VALUES.iter().map(|word| Value::from(*word)).collect(),
            ..MetaSchema::new("string")
        });
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl<S: Spelling> ParseFromJSON for Spelled<S> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(word)) => Ok(Spelled::new(word)),
            _ => Err(ParseError::expected_type(value.unwrap_or_default())),
        }
    }
}

impl<S: Spelling> ParseFromParameter for Spelled<S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        if value.chars().count() > MAX_WORD_CHARS {
            return Err(ParseError::custom(format!(
                "must be at most {MAX_WORD_CHARS} characters"
            )));
        }
        Ok(Spelled::new(value))
    }
}

impl<S: Spelling> ToJSON for Spelled<S> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// Longer than any word of any set by far; a longer value is not a misspelling worth echoing.
const MAX_WORD_CHARS: usize = 64;

impl<'de, S> serde::Deserialize<'de> for Spelled<S> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        if word.chars().count() > MAX_WORD_CHARS {
            return Err(serde::de::Error::custom(format!(
                "must be at most {MAX_WORD_CHARS} characters"
            )));
        }
        Ok(Spelled::new(word))
    }
}

macro_rules! spellings {
    ($($(#[doc = $doc:literal])* $name:ident = [$($word:literal),* $(,)?];)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;
            impl Spelling for $name {
                const NAME: &'static str = stringify!($name);
                const DESCRIPTION: &'static str = concat!($($doc),*);
                const VALUES: &'static [&'static str] = &[$($word),*];
            }
        )*
    };
}

spellings! {
    /// A provider as `/api/v1/*/ai-model-config` spells it (other capitalisations and the
    /// aliases Gemini, Bedrock, Azure and Custom are accepted too).
    ModelProvider = ["OpenAI", "Anthropic", "Google", "AWS", "OpenRouter", "Ollama", "Azure OpenAI", "Other"];
    /// What a model is used for.
    ModelKind = ["chat", "completion", "embedding", "image", "audio", "rerank"];
    /// A provider as `/ai/llm` spells it.
    AiType = ["OPENAI", "GOOGLE", "ANTHROPIC", "AWS", "OTHER"];
    /// A provider as `/api/user/api-keys` names it.
    PersonalProvider = ["anthropic", "openai", "openrouter", "bedrock"];
    /// A service as `/api/keys` spells it (any capitalisation is accepted).
    KeyService = ["OPENAI", "ANTHROPIC", "GOOGLE", "AWS", "OPENROUTER", "OLLAMA", "AZURE_OPENAI", "OTHER"];
    /// A provider as `/api/v1/settings` spells it.
    SettingsProvider = ["openai", "gemini", "anthropic", "openrouter", "ollama"];
    /// A provider as resolve and the history name it.
    ProviderId = ["openai", "anthropic", "google", "aws", "openrouter", "ollama", "azure_openai", "other"];
    /// Whose key serves a resolution: the caller's, the workspace's, the system's, or none
    /// for a provider that needs no key (Ollama).
    KeySource = ["user", "workspace", "system", "none"];
}

#[cfg(test)]
mod tests {
    use aimc_domain::{ModelType, Provider};

    use super::*;
    use crate::provider_catalogue::{
        seed_001_spelling, seed_003_spelling, SEED_002_PROVIDERS, SEED_004_PROVIDERS,
    };

    fn words(spelled: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut words: Vec<String> = spelled.into_iter().collect();
        words.dedup();
        words
    }

    #[test]
    fn each_enum_is_exactly_what_its_family_answers_with() {
        let all = Provider::ALL;
        let display = |p: Provider| p.display_name().to_owned();
        assert_eq!(ModelProvider::VALUES, words(all.map(display)));
        assert_eq!(
            ProviderId::VALUES,
            words(all.map(|p| p.as_str().to_owned()))
        );
        assert_eq!(KeyService::VALUES, words(all.map(seed_003_spelling)));
        let mut ai_types = words(all.map(|p| seed_001_spelling(p).to_owned()));
        ai_types.sort();
        let mut declared = AiType::VALUES.to_vec();
        declared.sort();
        assert_eq!(declared, ai_types);
        assert_eq!(
            PersonalProvider::VALUES,
            SEED_002_PROVIDERS.map(|(name, ..)| name)
        );
        assert_eq!(
            SettingsProvider::VALUES,
            SEED_004_PROVIDERS.map(|(name, _)| name)
        );
        let long = serde_json::json!("x".repeat(MAX_WORD_CHARS + 1));
        assert!(serde_json::from_value::<Spelled<ModelKind>>(long).is_err());
        for word in ModelKind::VALUES {
            assert_eq!(
                ModelType::parse(word).ok().map(ModelType::as_str),
                Some(*word)
            );
        }
    }
}
