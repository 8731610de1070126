//! Scenarios: given these events, when this command, then these events (or this error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::*;
use crate::services::IdSource;
use crate::values::{AggregateId, CredentialName, Owner, WorkspaceId};

/// Stands in for the keyring: a "client ciphertext" is `rsa(<plain>)`, and sealing records the
/// context so the tests see that each key is bound to its credential.
struct ScriptedSealer;

#[async_trait]
impl crate::services::KeySealer for ScriptedSealer {
    async fn seal(
        &self,
        workspace: &WorkspaceId,
        requests: Vec<SealRequest>,
    ) -> Result<Vec<SealedKey>, SealError> {
        requests
            .into_iter()
            .enumerate()
            .map(|(index, request)| {
                let (plain, context) = match request {
                    SealRequest::ClientEncrypted {
                        ciphertext,
                        context,
                    } => {
                        let plain = ciphertext
                            .strip_prefix("rsa(")
                            .and_then(|rest| rest.strip_suffix(')'))
                            .ok_or(SealError::Undecryptable { index })?;
                        (SecretString::from(plain), context)
                    }
                    SealRequest::Plain { plain, context } => (plain, context),
                };
                Ok(SealedKey {
                    ciphertext: Ciphertext(format!(
                        "sealed:{workspace}:{}:{}",
                        context.as_str(),
                        plain.expose_secret().len()
                    )),
                    hint: KeyHint::from_plain(&plain),
                })
            })
            .collect()
    }
}

struct CountingIds(AtomicU64);

impl IdSource for CountingIds {
    fn next_id(&self) -> Uuid {
        Uuid::from_u128(u128::from(self.0.fetch_add(1, Ordering::SeqCst)) + 1)
    }
}

/// New ids are handed out from `first`, so scenarios can name them.
fn framework_with_ids_from(first: u64) -> TestFramework<AiModelConfig> {
    TestFramework::with(ConfigServices {
        sealer: Arc::new(ScriptedSealer),
        ids: Arc::new(CountingIds(AtomicU64::new(first - 1))),
    })
}

fn framework() -> TestFramework<AiModelConfig> {
    framework_with_ids_from(1)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

const AGG: &str = "w1/user:alice";

fn aggregate_id() -> AggregateId {
    AggregateId::new(
        WorkspaceId::parse("w1").unwrap(),
        Owner::User("alice".into()),
    )
}

fn spec(provider: Provider, model: &str, is_paid: bool, key: KeyInput) -> ModelSpec {
    ModelSpec {
        provider,
        model_type: ModelType::Chat,
        model: ModelName::parse(model).unwrap(),
        is_paid,
        key,
    }
}

fn sealed(credential: u128, plain_len: usize) -> Ciphertext {
    Ciphertext(format!(
        "sealed:w1:aimc:{AGG}:{}:{plain_len}",
        CredentialId(id(credential))
    ))
}

fn created() -> AiModelConfigEvent {
    AiModelConfigEvent::ConfigCreated {
        workspace: "w1".into(),
        owner: "user:alice".into(),
    }
}

fn model_added(n: u128, provider: Provider, model: &str, is_paid: bool) -> AiModelConfigEvent {
    AiModelConfigEvent::ModelAdded {
        model_id: ModelId(id(n)),
        provider,
        model_type: ModelType::Chat,
        model: ModelName::parse(model).unwrap(),
        is_paid,
    }
}

fn credential_added(n: u128, provider: Provider, model: &str, plain: &str) -> AiModelConfigEvent {
    AiModelConfigEvent::CredentialAdded {
        credential_id: CredentialId(id(n)),
        name: format!("user:alice {provider} {model}"),
        provider,
        endpoint: None,
        access_key: None,
        access_key_hint: None,
        secret: sealed(n, plain.len()),
        hint: KeyHint::from_plain(&SecretString::from(plain)),
        number: None,
    }
}

fn attached(model: u128, credential: u128) -> AiModelConfigEvent {
    AiModelConfigEvent::ModelCredentialAttached {
        model_id: ModelId(id(model)),
        credential_id: CredentialId(id(credential)),
    }
}

const OPENAI_KEY: &str = "sk-openai-0123456789abcdef";

/// An existing config: gpt-4 (model 1) with a key (credential 2), llama3 (model 3) without.
fn existing() -> Vec<AiModelConfigEvent> {
    vec![
        created(),
        model_added(1, Provider::Openai, "gpt-4", true),
        credential_added(2, Provider::Openai, "gpt-4", OPENAI_KEY),
        attached(1, 2),
        model_added(3, Provider::Ollama, "llama3", false),
        AiModelConfigEvent::SystemPromptChanged {
            system_prompt: Some(SystemPrompt::parse("You are a helpful AI assistant.").unwrap()),
        },
    ]
}

fn seed_000_models() -> Vec<ModelSpec> {
    vec![
        spec(
            Provider::Openai,
            "gpt-4",
            true,
            KeyInput::Encrypted(format!("rsa({OPENAI_KEY})")),
        ),
        spec(Provider::Ollama, "llama3", false, KeyInput::Remove),
    ]
}

#[test]
fn creating_a_config_records_models_keys_and_prompt() {
    framework()
        .given_no_previous_events()
        .when(AiModelConfigCommand::CreateConfig {
            id: aggregate_id(),
            models: seed_000_models(),
            system_prompt: Some(SystemPrompt::parse("You are a helpful AI assistant.").unwrap()),
            numbers: vec![],
        })
        .then_expect_events(existing());
}

#[test]
fn creating_twice_is_refused() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::CreateConfig {
            id: aggregate_id(),
            models: vec![],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_error(DomainError::ConfigAlreadyExists);
}

#[test]
fn replacing_a_config_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_error(DomainError::ConfigNotFound);
}

#[test]
fn replacing_with_the_same_settings_and_the_stored_ciphertext_records_nothing() {
    let stored = sealed(2, OPENAI_KEY.len()).0;
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Encrypted(stored)),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            system_prompt: Some(Some(
                SystemPrompt::parse("You are a helpful AI assistant.").unwrap(),
            )),
            numbers: vec![],
        })
        .then_expect_events(vec![]);
}

#[test]
fn an_absent_key_keeps_the_key_and_null_removes_it() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Remove),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelCredentialDetached {
                model_id: ModelId(id(1)),
            },
            AiModelConfigEvent::CredentialRemoved {
                credential_id: CredentialId(id(2)),
            },
        ]);
}

#[test]
fn a_new_client_encrypted_key_replaces_the_secret_of_the_same_credential() {
    let new_key = "sk-rotated-abcdefghijklmnop9876";
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(
                    Provider::Openai,
                    "gpt-4",
                    true,
                    KeyInput::Encrypted(format!("rsa({new_key})")),
                ),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![AiModelConfigEvent::CredentialSecretReplaced {
            credential_id: CredentialId(id(2)),
            secret: sealed(2, new_key.len()),
            hint: KeyHint::from_plain(&SecretString::from(new_key)),
        }]);
}

#[test]
fn a_replacement_emits_only_the_differences() {
    let anthropic_key = "sk-ant-0123456789";
    framework_with_ids_from(10)
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(
                    Provider::Anthropic,
                    "claude-2",
                    true,
                    KeyInput::Plain(anthropic_key.into()),
                ),
                spec(Provider::Ollama, "llama3", true, KeyInput::Keep),
            ],
            system_prompt: Some(None),
            numbers: vec![],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            AiModelConfigEvent::CredentialRemoved {
                credential_id: CredentialId(id(2)),
            },
            model_added(10, Provider::Anthropic, "claude-2", true),
            credential_added(11, Provider::Anthropic, "claude-2", anthropic_key),
            attached(10, 11),
            AiModelConfigEvent::ModelPaidFlagChanged {
                model_id: ModelId(id(3)),
                is_paid: true,
            },
            AiModelConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
            AiModelConfigEvent::SystemPromptChanged {
                system_prompt: None,
            },
        ]);
}

#[test]
fn reordering_models_is_recorded() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(Provider::Openai, "gpt-4", true, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![AiModelConfigEvent::ModelsReordered {
            model_ids: vec![ModelId(id(3)), ModelId(id(1))],
        }]);
}

#[test]
fn a_key_that_does_not_decrypt_is_refused_naming_its_model() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(
                    Provider::Openai,
                    "gpt-4",
                    true,
                    KeyInput::Encrypted("garbage".into()),
                ),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_error(DomainError::UndecryptableKey { index: 1 });
}

#[test]
fn the_same_model_twice_is_refused() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Keep),
                spec(Provider::Openai, "gpt-4", false, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_error(DomainError::DuplicateModel {
            index: 1,
            provider: "openai".into(),
            model_type: "chat".into(),
            model: "gpt-4".into(),
        });
}

#[test]
fn replaying_the_events_rebuilds_the_state() {
    let mut config = AiModelConfig::default();
    for event in existing() {
        config.apply(event);
    }
    assert_eq!(config.id.as_deref(), Some(AGG));
    assert_eq!(config.models.len(), 2);
    let gpt4 = &config.models[0];
    assert_eq!(
        config.credential_of(gpt4).map(|c| c.hint.as_str()),
        Some("sk-...cdef")
    );
    assert_eq!(config.models[1].credential, None);
}

#[test]
fn replacing_a_model_of_the_same_provider_without_a_key_moves_its_key() {
    framework_with_ids_from(10)
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Openai, "gpt-4o", true, KeyInput::Keep),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            model_added(10, Provider::Openai, "gpt-4o", true),
            attached(10, 2),
            AiModelConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
        ]);
}

#[test]
fn replacing_a_model_with_an_explicit_null_key_drops_the_old_key() {
    framework_with_ids_from(10)
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Openai, "gpt-4o", true, KeyInput::Remove),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            AiModelConfigEvent::CredentialRemoved {
                credential_id: CredentialId(id(2)),
            },
            model_added(10, Provider::Openai, "gpt-4o", true),
            AiModelConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
        ]);
}

#[test]
fn sending_back_a_removed_models_stored_ciphertext_moves_that_key() {
    let stored = sealed(2, OPENAI_KEY.len()).0;
    framework_with_ids_from(10)
        .given(existing())
        .when(AiModelConfigCommand::ReplaceConfig {
            models: vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(
                    Provider::Openai,
                    "gpt-4o",
                    true,
                    KeyInput::Encrypted(stored),
                ),
            ],
            system_prompt: None,
            numbers: vec![],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            model_added(10, Provider::Openai, "gpt-4o", true),
            attached(10, 2),
        ]);
}

const WS_AGG: &str = "w1/workspace";

fn workspace_id_() -> AggregateId {
    AggregateId::new(WorkspaceId::parse("w1").unwrap(), Owner::Workspace)
}

fn sealed_in(
    aggregate: &str,
    context_suffix: &str,
    credential: u128,
    plain_len: usize,
) -> Ciphertext {
    Ciphertext(format!(
        "sealed:w1:aimc:{aggregate}:{}{context_suffix}:{plain_len}",
        CredentialId(id(credential))
    ))
}

fn workspace_credential_added() -> Vec<AiModelConfigEvent> {
    vec![
        AiModelConfigEvent::ConfigCreated {
            workspace: "w1".into(),
            owner: "workspace".into(),
        },
        AiModelConfigEvent::CredentialAdded {
            credential_id: CredentialId(id(7)),
            name: "My OpenAI Config".into(),
            provider: Provider::Openai,
            endpoint: Some("https://api.openai.com/v1".into()),
            access_key: Some(sealed_in(WS_AGG, ":access_key", 7, 19)),
            access_key_hint: Some(KeyHint::from_plain(&SecretString::from(
                "optional-access-key",
            ))),
            secret: sealed_in(WS_AGG, "", 7, 20),
            hint: KeyHint::from_plain(&SecretString::from("sk-proj-xxxxxxxxxxxx")),
            number: Some(41),
        },
    ]
}

#[test]
fn the_first_credential_creates_the_workspace_configuration_and_seals_both_keys() {
    framework()
        .given_no_previous_events()
        .when(AiModelConfigCommand::AddCredential {
            id: workspace_id_(),
            credential_id: CredentialId(id(7)),
            name: CredentialName::parse("My OpenAI Config").unwrap(),
            provider: Provider::Openai,
            endpoint: Some("https://api.openai.com/v1".into()),
            access_key: Some("optional-access-key".into()),
            secret: "sk-proj-xxxxxxxxxxxx".into(),
            number: Some(41),
        })
        .then_expect_events(workspace_credential_added());
}

#[test]
fn changing_a_credential_records_only_what_changed() {
    framework()
        .given(workspace_credential_added())
        .when(AiModelConfigCommand::ChangeCredential {
            credential_id: CredentialId(id(7)),
            name: Some(CredentialName::parse("Renamed").unwrap()),
            provider: Some(Provider::Openai),
            endpoint: Some(Some("https://api.openai.com/v1".into())),
            access_key: None,
            secret: Some("sk-proj-rotated-000001".into()),
        })
        .then_expect_events(vec![
            AiModelConfigEvent::CredentialRenamed {
                credential_id: CredentialId(id(7)),
                name: "Renamed".into(),
            },
            AiModelConfigEvent::CredentialSecretReplaced {
                credential_id: CredentialId(id(7)),
                secret: sealed_in(WS_AGG, "", 7, 22),
                hint: KeyHint::from_plain(&SecretString::from("sk-proj-rotated-000001")),
            },
        ]);
}

#[test]
fn removing_an_unknown_credential_is_refused() {
    framework()
        .given(workspace_credential_added())
        .when(AiModelConfigCommand::RemoveCredential {
            credential_id: CredentialId(id(99)),
        })
        .then_expect_error(DomainError::CredentialNotFound);
}

#[test]
fn removing_a_credential_detaches_it_from_its_models() {
    framework()
        .given(existing())
        .when(AiModelConfigCommand::RemoveCredential {
            credential_id: CredentialId(id(2)),
        })
        .then_expect_events(vec![
            AiModelConfigEvent::ModelCredentialDetached {
                model_id: ModelId(id(1)),
            },
            AiModelConfigEvent::CredentialRemoved {
                credential_id: CredentialId(id(2)),
            },
        ]);
}

fn task(name: &str) -> crate::values::TaskName {
    crate::values::TaskName::parse(name).unwrap()
}

#[test]
fn assigning_tasks_records_the_differences_and_needs_a_configured_provider() {
    let mut given = workspace_credential_added();
    given.push(AiModelConfigEvent::TaskAssigned {
        task: task("chat"),
        provider: Provider::Openai,
        model: ModelName::parse("gpt-4").unwrap(),
    });
    framework()
        .given(given.clone())
        .when(AiModelConfigCommand::AssignTasks {
            assignments: vec![(
                task("summarize"),
                Provider::Openai,
                ModelName::parse("gpt-4o").unwrap(),
            )],
        })
        .then_expect_events(vec![
            AiModelConfigEvent::TaskUnassigned { task: task("chat") },
            AiModelConfigEvent::TaskAssigned {
                task: task("summarize"),
                provider: Provider::Openai,
                model: ModelName::parse("gpt-4o").unwrap(),
            },
        ]);
    framework()
        .given(given)
        .when(AiModelConfigCommand::AssignTasks {
            assignments: vec![(
                task("chat"),
                Provider::Anthropic,
                ModelName::parse("claude-2").unwrap(),
            )],
        })
        .then_expect_error(DomainError::ProviderNotConfigured {
            task: "chat".into(),
            provider: "anthropic".into(),
        });
}

#[test]
fn setting_a_providers_key_creates_its_model_and_credential_and_a_model_alone_needs_no_key() {
    let change = |provider, secret: Option<&str>, model: Option<&str>, credential: u128| {
        crate::commands::ProviderKeyChange {
            provider,
            model: model.map(|m| ModelName::parse(m).unwrap()),
            default_model: ModelName::parse("default-model").unwrap(),
            secret: secret.map(SecretString::from),
            access_key: None,
            endpoint: None,
            new_credential: CredentialId(id(credential)),
            new_name: CredentialName::parse("user:alice anthropic key").unwrap(),
            new_number: Some(7),
        }
    };
    framework_with_ids_from(10)
        .given_no_previous_events()
        .when(AiModelConfigCommand::SetProviderKeys {
            id: aggregate_id(),
            changes: vec![
                change(Provider::Anthropic, Some("sk-ant-0123456789"), None, 20),
                change(Provider::Openai, None, Some("gpt-4-turbo"), 21),
            ],
        })
        .then_expect_events(vec![
            created(),
            model_added(10, Provider::Anthropic, "default-model", true),
            AiModelConfigEvent::CredentialAdded {
                credential_id: CredentialId(id(20)),
                name: "user:alice anthropic key".into(),
                provider: Provider::Anthropic,
                endpoint: None,
                access_key: None,
                access_key_hint: None,
                secret: sealed(20, 17),
                hint: KeyHint::from_plain(&SecretString::from("sk-ant-0123456789")),
                number: Some(7),
            },
            attached(10, 20),
            model_added(11, Provider::Openai, "gpt-4-turbo", true),
        ]);
}
