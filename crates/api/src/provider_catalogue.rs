//! The providers each seed knows, in its own spelling, and seed 002's default models.

use aimc_domain::Provider;

/// Seed 002's providers (family C), in its spelling, with its default models.
pub const SEED_002_PROVIDERS: [(&str, Provider, &str); 4] = [
    ("anthropic", Provider::Anthropic, "claude-sonnet-4-20250514"),
    ("openai", Provider::Openai, "gpt-4o"),
    (
        "openrouter",
        Provider::Openrouter,
        "anthropic/claude-sonnet-4-20250514",
    ),
    (
        "bedrock",
        Provider::Aws,
        "anthropic.claude-3-sonnet-20240229-v1:0",
    ),
];

/// Seed 002's spelling and default model of a provider it knows.
pub fn seed_002(provider: Provider) -> Option<(&'static str, &'static str)> {
    SEED_002_PROVIDERS
        .iter()
        .find(|(_, known, _)| *known == provider)
        .map(|(name, _, model)| (*name, *model))
}

/// Seed 002's provider by its spelling (any case).
pub fn seed_002_named(name: &str) -> Option<(&'static str, Provider, &'static str)> {
    SEED_002_PROVIDERS
        .iter()
        .find(|(known, ..)| known.eq_ignore_ascii_case(name))
        .copied()
}

/// Seed 004's providers (family E), in its spelling.
pub const SEED_004_PROVIDERS: [(&str, Provider); 5] = [
    ("openai", Provider::Openai),
    ("gemini", Provider::Google),
    ("anthropic", Provider::Anthropic),
    ("openrouter", Provider::Openrouter),
    ("ollama", Provider::Ollama),
];

/// Seed 004's provider by any of its spellings; `None` for one seed 004 does not know.
pub fn seed_004_named(raw: &str) -> Option<(&'static str, Provider)> {
    let folded = raw.trim().to_ascii_lowercase();
    SEED_004_PROVIDERS
        .iter()
        .find(|(name, provider)| {
            *name == folded || Provider::parse(&folded).ok() == Some(*provider)
        })
        .copied()
}

/// Seed 004's spelling of a provider.
pub fn seed_004_spelling(provider: Provider) -> &'static str {
    SEED_004_PROVIDERS
        .iter()
        .find(|(_, known)| *known == provider)
        .map_or(provider.as_str(), |(name, _)| *name)
}

/// Seed 001's `aiType` values (family B).
pub const SEED_001_AI_TYPES: &str = "OPENAI, GOOGLE, ANTHROPIC, AWS, OTHER";

/// A provider from seed 001's `aiType`.
pub fn seed_001_named(raw: &str) -> Option<Provider> {
    match raw.trim().to_ascii_uppercase().as_str() {
        "OPENAI" => Some(Provider::Openai),
        "GOOGLE" => Some(Provider::Google),
        "ANTHROPIC" => Some(Provider::Anthropic),
        "AWS" => Some(Provider::Aws),
        "OTHER" => Some(Provider::Other),
        _ => None,
    }
}

/// Seed 001's `aiType` of a provider; the providers it does not know are `OTHER`.
pub fn seed_001_spelling(provider: Provider) -> &'static str {
    match provider {
        Provider::Openai => "OPENAI",
        Provider::Google => "GOOGLE",
        Provider::Anthropic => "ANTHROPIC",
        Provider::Aws => "AWS",
        _ => "OTHER",
    }
}

/// Seed 003's `service` of a provider.
pub fn seed_003_spelling(provider: Provider) -> String {
    provider.as_str().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_spells_its_providers_its_own_way() {
        assert_eq!(seed_002_named("Bedrock").map(|p| p.1), Some(Provider::Aws));
        assert_eq!(seed_002(Provider::Openai), Some(("openai", "gpt-4o")));
        assert_eq!(seed_004_named("GEMINI"), Some(("gemini", Provider::Google)));
        assert_eq!(seed_004_named("google"), Some(("gemini", Provider::Google)));
        assert_eq!(seed_004_named("bedrock"), None);
        assert_eq!(seed_001_named("anthropic"), Some(Provider::Anthropic));
        assert_eq!(seed_001_spelling(Provider::Ollama), "OTHER");
        assert_eq!(seed_003_spelling(Provider::AzureOpenai), "AZURE_OPENAI");
    }
}
