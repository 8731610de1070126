//! Scenarios: given these events, when this command, then these events (or this error).

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use secrecy::SecretString;

use super::*;
use crate::credential::{CredentialChange, TestOutcome};
use crate::ids::{Owner, WorkspaceId};
use crate::testing::{id, services, ScriptedRegistry};
use crate::values::{Ciphertext, CredentialName, KeyHint};

/// New ids are handed out from `first`, so scenarios can name them; numbers from 100.
fn framework_with_ids_from(first: u64) -> TestFramework<AiModelConfig> {
    TestFramework::with(services(first, ScriptedRegistry::default()))
}

fn framework() -> TestFramework<AiModelConfig> {
    framework_with_ids_from(1)
}

const AGG: &str = "w1/user:alice";

fn config_id() -> ConfigId {
    ConfigId::new(
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

fn sealed_in(config: &str, suffix: &str, credential: u128, plain_len: usize) -> Ciphertext {
    Ciphertext(format!(
        "sealed:w1:aimc:{config}:{}{suffix}:{plain_len}",
        CredentialId(id(credential))
    ))
}

fn sealed(credential: u128, plain_len: usize) -> Ciphertext {
    sealed_in(AGG, "", credential, plain_len)
}

fn created() -> ConfigEvent {
    ConfigEvent::ConfigCreated {
        workspace: WorkspaceId::parse("w1").unwrap(),
        owner: Owner::User("alice".into()),
    }
}

fn model_added(n: u128, provider: Provider, model: &str, is_paid: bool) -> ConfigEvent {
    ConfigEvent::ModelAdded {
        model_id: ModelId(id(n)),
        provider,
        model_type: ModelType::Chat,
        model: ModelName::parse(model).unwrap(),
        is_paid,
    }
}

fn name(raw: &str) -> CredentialName {
    CredentialName::parse(raw).unwrap()
}

fn credential_added(
    n: u128,
    provider: Provider,
    name_given: &str,
    plain: &str,
    number: i64,
) -> ConfigEvent {
    ConfigEvent::Credential(CredentialEvent::Added {
        credential_id: CredentialId(id(n)),
        name: name(name_given),
        provider,
        endpoint: None,
        access_key: None,
        access_key_hint: None,
        secret: sealed(n, plain.len()),
        hint: KeyHint::from_plain(&SecretString::from(plain)),
        number: Some(number),
        owner: None,
    })
}

fn removed(n: u128) -> ConfigEvent {
    ConfigEvent::Credential(CredentialEvent::Removed {
        credential_id: CredentialId(id(n)),
    })
}

fn attached(model: u128, credential: u128) -> ConfigEvent {
    ConfigEvent::ModelCredentialAttached {
        model_id: ModelId(id(model)),
        credential_id: CredentialId(id(credential)),
    }
}

const OPENAI_KEY: &str = "sk-openai-0123456789abcdef";

/// An existing config: gpt-4 (model 1) with a key (credential 2), llama3 (model 3) without.
fn existing() -> Vec<ConfigEvent> {
    vec![
        created(),
        model_added(1, Provider::Openai, "gpt-4", true),
        credential_added(2, Provider::Openai, "alice openai gpt-4", OPENAI_KEY, 100),
        attached(1, 2),
        model_added(3, Provider::Ollama, "llama3", false),
        ConfigEvent::SystemPromptChanged {
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

fn replace(models: Vec<ModelSpec>, system_prompt: Option<Option<SystemPrompt>>) -> ConfigCommand {
    ConfigCommand::Replace {
        models,
        system_prompt,
    }
}

#[test]
fn creating_a_config_records_models_keys_and_prompt() {
    framework()
        .given_no_previous_events()
        .when(ConfigCommand::Create {
            id: config_id(),
            models: seed_000_models(),
            system_prompt: Some(SystemPrompt::parse("You are a helpful AI assistant.").unwrap()),
        })
        .then_expect_events(existing());
}

#[test]
fn creating_twice_is_refused() {
    framework()
        .given(existing())
        .when(ConfigCommand::Create {
            id: config_id(),
            models: vec![],
            system_prompt: None,
        })
        .then_expect_error(DomainError::ConfigAlreadyExists);
}

#[test]
fn replacing_a_config_that_does_not_exist_is_refused() {
    framework()
        .given_no_previous_events()
        .when(replace(vec![], None))
        .then_expect_error(DomainError::ConfigNotFound);
}

#[test]
fn replacing_with_the_same_settings_and_the_stored_ciphertext_records_nothing() {
    let stored = sealed(2, OPENAI_KEY.len()).0;
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Encrypted(stored)),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            Some(Some(
                SystemPrompt::parse("You are a helpful AI assistant.").unwrap(),
            )),
        ))
        .then_expect_events(vec![]);
}

#[test]
fn an_absent_key_keeps_the_key_and_null_removes_it() {
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Remove),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_events(vec![
            ConfigEvent::ModelCredentialDetached {
                model_id: ModelId(id(1)),
            },
            removed(2),
        ]);
}

#[test]
fn a_new_client_encrypted_key_replaces_the_secret_of_the_same_credential() {
    let new_key = "sk-rotated-abcdefghijklmnop9876";
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(
                    Provider::Openai,
                    "gpt-4",
                    true,
                    KeyInput::Encrypted(format!("rsa({new_key})")),
                ),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_events(vec![ConfigEvent::Credential(
            CredentialEvent::SecretReplaced {
                credential_id: CredentialId(id(2)),
                secret: sealed(2, new_key.len()),
                hint: KeyHint::from_plain(&SecretString::from(new_key)),
            },
        )]);
}

#[test]
fn a_replacement_emits_only_the_differences() {
    let anthropic_key = "sk-ant-0123456789";
    framework_with_ids_from(10)
        .given(existing())
        .when(replace(
            vec![
                spec(
                    Provider::Anthropic,
                    "claude-2",
                    true,
                    KeyInput::Plain(anthropic_key.into()),
                ),
                spec(Provider::Ollama, "llama3", true, KeyInput::Keep),
            ],
            Some(None),
        ))
        .then_expect_events(vec![
            ConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            removed(2),
            model_added(10, Provider::Anthropic, "claude-2", true),
            credential_added(
                11,
                Provider::Anthropic,
                "alice anthropic claude-2",
                anthropic_key,
                100,
            ),
            attached(10, 11),
            ConfigEvent::ModelPaidFlagChanged {
                model_id: ModelId(id(3)),
                is_paid: true,
            },
            ConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
            ConfigEvent::SystemPromptChanged {
                system_prompt: None,
            },
        ]);
}

#[test]
fn reordering_models_is_recorded() {
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(Provider::Openai, "gpt-4", true, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_events(vec![ConfigEvent::ModelsReordered {
            model_ids: vec![ModelId(id(3)), ModelId(id(1))],
        }]);
}

#[test]
fn a_key_that_does_not_decrypt_is_refused_naming_its_model() {
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(
                    Provider::Openai,
                    "gpt-4",
                    true,
                    KeyInput::Encrypted("garbage".into()),
                ),
            ],
            None,
        ))
        .then_expect_error(DomainError::UndecryptableKey { model_index: 1 });
}

#[test]
fn the_same_model_twice_is_refused() {
    framework()
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Keep),
                spec(Provider::Openai, "gpt-4", false, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_error(DomainError::DuplicateModel {
            model_index: 1,
            provider: Provider::Openai,
            model_type: ModelType::Chat,
            model: ModelName::parse("gpt-4").unwrap(),
        });
}

#[test]
fn replaying_the_events_rebuilds_the_state() {
    let mut config = AiModelConfig::default();
    for event in existing() {
        config.apply(event);
    }
    assert_eq!(config.id, Some(config_id()));
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
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4o", true, KeyInput::Keep),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_events(vec![
            ConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            model_added(10, Provider::Openai, "gpt-4o", true),
            attached(10, 2),
            ConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
        ]);
}

#[test]
fn replacing_a_model_with_an_explicit_null_key_drops_the_old_key() {
    framework_with_ids_from(10)
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4o", true, KeyInput::Remove),
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
            ],
            None,
        ))
        .then_expect_events(vec![
            ConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            removed(2),
            model_added(10, Provider::Openai, "gpt-4o", true),
            ConfigEvent::ModelsReordered {
                model_ids: vec![ModelId(id(10)), ModelId(id(3))],
            },
        ]);
}

#[test]
fn sending_back_a_removed_models_stored_ciphertext_moves_that_key() {
    let stored = sealed(2, OPENAI_KEY.len()).0;
    framework_with_ids_from(10)
        .given(existing())
        .when(replace(
            vec![
                spec(Provider::Ollama, "llama3", false, KeyInput::Keep),
                spec(
                    Provider::Openai,
                    "gpt-4o",
                    true,
                    KeyInput::Encrypted(stored),
                ),
            ],
            None,
        ))
        .then_expect_events(vec![
            ConfigEvent::ModelRemoved {
                model_id: ModelId(id(1)),
            },
            model_added(10, Provider::Openai, "gpt-4o", true),
            attached(10, 2),
        ]);
}

#[test]
fn two_new_keys_with_one_generated_name_are_told_apart() {
    let key = "sk-openai-9999999999";
    framework_with_ids_from(10)
        .given(vec![created()])
        .when(replace(
            vec![
                spec(Provider::Openai, "gpt-4", true, KeyInput::Plain(key.into())),
                ModelSpec {
                    model_type: ModelType::Embedding,
                    ..spec(Provider::Openai, "gpt-4", true, KeyInput::Plain(key.into()))
                },
            ],
            None,
        ))
        .then_expect_events(vec![
            model_added(10, Provider::Openai, "gpt-4", true),
            credential_added(11, Provider::Openai, "alice openai gpt-4", key, 100),
            attached(10, 11),
            ConfigEvent::ModelAdded {
                model_id: ModelId(id(12)),
                provider: Provider::Openai,
                model_type: ModelType::Embedding,
                model: ModelName::parse("gpt-4").unwrap(),
                is_paid: true,
            },
            credential_added(
                13,
                Provider::Openai,
                "alice openai gpt-4 (0000000d)",
                key,
                101,
            ),
            attached(12, 13),
        ]);
}

const WS_AGG: &str = "w1/workspace";

fn workspace_config() -> ConfigId {
    ConfigId::new(WorkspaceId::parse("w1").unwrap(), Owner::Workspace)
}

/// A workspace configuration with a key kept for OpenAI (credential 7).
fn workspace_with_a_key() -> Vec<ConfigEvent> {
    vec![
        ConfigEvent::ConfigCreated {
            workspace: WorkspaceId::parse("w1").unwrap(),
            owner: Owner::Workspace,
        },
        ConfigEvent::Credential(CredentialEvent::Added {
            credential_id: CredentialId(id(7)),
            name: name("OpenAI key"),
            provider: Provider::Openai,
            endpoint: None,
            access_key: None,
            access_key_hint: None,
            secret: sealed_in(WS_AGG, "", 7, 20),
            hint: KeyHint::from_plain(&SecretString::from("sk-proj-xxxxxxxxxxxx")),
            number: Some(41),
            owner: None,
        }),
    ]
}

#[test]
fn saving_a_providers_key_replaces_the_one_kept_for_it_or_adds_one() {
    framework()
        .given(workspace_with_a_key())
        .when(ConfigCommand::SaveProviderKey {
            id: workspace_config(),
            provider: Provider::Openai,
            secret: "sk-proj-rotated-000001".into(),
            name: "OpenAI key".into(),
        })
        .then_expect_events(vec![ConfigEvent::Credential(
            CredentialEvent::SecretReplaced {
                credential_id: CredentialId(id(7)),
                secret: sealed_in(WS_AGG, "", 7, 22),
                hint: KeyHint::from_plain(&SecretString::from("sk-proj-rotated-000001")),
            },
        )]);
    framework_with_ids_from(20)
        .given_no_previous_events()
        .when(ConfigCommand::SaveProviderKey {
            id: workspace_config(),
            provider: Provider::Anthropic,
            secret: "sk-ant-0123456789".into(),
            name: "Anthropic key".into(),
        })
        .then_expect_events(vec![
            ConfigEvent::ConfigCreated {
                workspace: WorkspaceId::parse("w1").unwrap(),
                owner: Owner::Workspace,
            },
            ConfigEvent::Credential(CredentialEvent::Added {
                credential_id: CredentialId(id(20)),
                name: name("Anthropic key"),
                provider: Provider::Anthropic,
                endpoint: None,
                access_key: None,
                access_key_hint: None,
                secret: sealed_in(WS_AGG, "", 20, 17),
                hint: KeyHint::from_plain(&SecretString::from("sk-ant-0123456789")),
                number: Some(100),
                owner: None,
            }),
        ]);
}

#[test]
fn a_name_another_credential_holds_is_given_a_suffix() {
    let registry = ScriptedRegistry::default();
    registry
        .held
        .lock()
        .unwrap()
        .insert("anthropic key".into(), CredentialId(id(99)));
    TestFramework::<AiModelConfig>::with(services(20, registry))
        .given_no_previous_events()
        .when(ConfigCommand::SaveProviderKey {
            id: workspace_config(),
            provider: Provider::Anthropic,
            secret: "sk-ant-0123456789".into(),
            name: "Anthropic key".into(),
        })
        .then_expect_events(vec![
            ConfigEvent::ConfigCreated {
                workspace: WorkspaceId::parse("w1").unwrap(),
                owner: Owner::Workspace,
            },
            ConfigEvent::Credential(CredentialEvent::Added {
                credential_id: CredentialId(id(20)),
                name: name("Anthropic key (00000014)"),
                provider: Provider::Anthropic,
                endpoint: None,
                access_key: None,
                access_key_hint: None,
                secret: sealed_in(WS_AGG, "", 20, 17),
                hint: KeyHint::from_plain(&SecretString::from("sk-ant-0123456789")),
                number: Some(100),
                owner: None,
            }),
        ]);
}

#[test]
fn changing_a_credential_kept_here_records_only_what_changed() {
    framework()
        .given(workspace_with_a_key())
        .when(ConfigCommand::Credential(CredentialCommand::Change {
            credential_id: CredentialId(id(7)),
            change: CredentialChange {
                name: Some(name("Renamed")),
                provider: Some(Provider::Openai),
                endpoint: Some(None),
                access_key: None,
                secret: Some("sk-proj-rotated-000001".into()),
            },
        }))
        .then_expect_events(vec![
            ConfigEvent::Credential(CredentialEvent::Renamed {
                credential_id: CredentialId(id(7)),
                name: name("Renamed"),
            }),
            ConfigEvent::Credential(CredentialEvent::SecretReplaced {
                credential_id: CredentialId(id(7)),
                secret: sealed_in(WS_AGG, "", 7, 22),
                hint: KeyHint::from_plain(&SecretString::from("sk-proj-rotated-000001")),
            }),
        ]);
}

#[test]
fn removing_an_unknown_credential_is_refused() {
    framework()
        .given(workspace_with_a_key())
        .when(ConfigCommand::Credential(CredentialCommand::Remove {
            credential_id: CredentialId(id(99)),
        }))
        .then_expect_error(DomainError::CredentialNotFound(CredentialId(id(99))));
}

#[test]
fn removing_a_credential_detaches_it_from_its_models() {
    framework()
        .given(existing())
        .when(ConfigCommand::Credential(CredentialCommand::Remove {
            credential_id: CredentialId(id(2)),
        }))
        .then_expect_events(vec![
            ConfigEvent::ModelCredentialDetached {
                model_id: ModelId(id(1)),
            },
            removed(2),
        ]);
}

#[test]
fn a_test_of_a_key_that_changed_meanwhile_is_not_recorded() {
    let outcome = |secret: Ciphertext| TestOutcome {
        tested_secret: secret,
        tested_endpoint: None,
        ok: true,
        status: Some(200),
        reason: "3 models".into(),
        checked_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
    };
    framework()
        .given(workspace_with_a_key())
        .when(ConfigCommand::Credential(CredentialCommand::RecordTest {
            credential_id: CredentialId(id(7)),
            outcome: outcome(sealed_in(WS_AGG, "", 7, 20)),
        }))
        .then_expect_events(vec![ConfigEvent::Credential(CredentialEvent::Validated {
            credential_id: CredentialId(id(7)),
            verdict: crate::credential::TestVerdict::Valid,
            status: Some(200),
            reason: "3 models".into(),
            checked_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        })]);
    framework()
        .given(workspace_with_a_key())
        .when(ConfigCommand::Credential(CredentialCommand::RecordTest {
            credential_id: CredentialId(id(7)),
            outcome: outcome(Ciphertext("sealed:an-older-key".into())),
        }))
        .then_expect_error(DomainError::CredentialChangedDuringTest);
}

fn task(name: &str) -> TaskName {
    TaskName::parse(name).unwrap()
}

#[test]
fn assigning_tasks_records_the_differences_and_needs_a_configured_provider() {
    let mut given = workspace_with_a_key();
    given.push(ConfigEvent::TaskAssigned {
        task: task("chat"),
        provider: Provider::Openai,
        model: ModelName::parse("gpt-4").unwrap(),
    });
    framework()
        .given(given.clone())
        .when(ConfigCommand::AssignTasks {
            id: workspace_config(),
            assignments: vec![(
                task("summarize"),
                Provider::Openai,
                ModelName::parse("gpt-4o").unwrap(),
            )],
        })
        .then_expect_events(vec![
            ConfigEvent::TaskUnassigned { task: task("chat") },
            ConfigEvent::TaskAssigned {
                task: task("summarize"),
                provider: Provider::Openai,
                model: ModelName::parse("gpt-4o").unwrap(),
            },
        ]);
    framework()
        .given(given)
        .when(ConfigCommand::AssignTasks {
            id: workspace_config(),
            assignments: vec![(
                task("chat"),
                Provider::Anthropic,
                ModelName::parse("claude-2").unwrap(),
            )],
        })
        .then_expect_error(DomainError::ProviderNotConfigured {
            task: task("chat"),
            provider: Provider::Anthropic,
        });
}

#[test]
fn a_task_may_name_a_provider_whose_key_has_a_stream_of_its_own() {
    let registry = ScriptedRegistry {
        keyed_elsewhere: vec![Provider::Anthropic],
        ..ScriptedRegistry::default()
    };
    TestFramework::<AiModelConfig>::with(services(1, registry))
        .given_no_previous_events()
        .when(ConfigCommand::AssignTasks {
            id: workspace_config(),
            assignments: vec![(
                task("chat"),
                Provider::Anthropic,
                ModelName::parse("claude-2").unwrap(),
            )],
        })
        .then_expect_events(vec![
            ConfigEvent::ConfigCreated {
                workspace: WorkspaceId::parse("w1").unwrap(),
                owner: Owner::Workspace,
            },
            ConfigEvent::TaskAssigned {
                task: task("chat"),
                provider: Provider::Anthropic,
                model: ModelName::parse("claude-2").unwrap(),
            },
        ]);
}

#[test]
fn setting_a_providers_key_creates_its_model_and_credential_and_a_model_alone_needs_no_key() {
    let change = |provider, secret: Option<&str>, model: Option<&str>| ProviderKeyChange {
        provider,
        model: model.map(|m| ModelName::parse(m).unwrap()),
        default_model: ModelName::parse("default-model").unwrap(),
        secret: secret.map(SecretString::from),
        access_key: None,
        endpoint: None,
        name: format!("alice {provider} key"),
    };
    framework_with_ids_from(10)
        .given_no_previous_events()
        .when(ConfigCommand::SetProviderKeys {
            id: config_id(),
            changes: vec![
                change(Provider::Anthropic, Some("sk-ant-0123456789"), None),
                change(Provider::Openai, None, Some("gpt-4-turbo")),
            ],
        })
        .then_expect_events(vec![
            created(),
            model_added(10, Provider::Anthropic, "default-model", true),
            credential_added(
                11,
                Provider::Anthropic,
                "alice anthropic key",
                "sk-ant-0123456789",
                100,
            ),
            attached(10, 11),
            model_added(12, Provider::Openai, "gpt-4-turbo", true),
        ]);
}

#[test]
fn a_key_without_a_secret_for_a_new_provider_is_refused() {
    framework()
        .given_no_previous_events()
        .when(ConfigCommand::SetProviderKeys {
            id: config_id(),
            changes: vec![ProviderKeyChange {
                provider: Provider::Aws,
                model: None,
                default_model: ModelName::parse("default-model").unwrap(),
                secret: None,
                access_key: Some("AKIAEXAMPLE0000".into()),
                endpoint: None,
                name: "alice bedrock key".into(),
            }],
        })
        .then_expect_error(DomainError::KeyRequired {
            provider: Provider::Aws,
        });
}

#[test]
fn removing_a_providers_key_leaves_its_model() {
    let mut given = existing();
    given.truncate(4);
    framework()
        .given(given)
        .when(ConfigCommand::RemoveProviderKey {
            provider: Provider::Openai,
        })
        .then_expect_events(vec![
            ConfigEvent::ModelCredentialDetached {
                model_id: ModelId(id(1)),
            },
            removed(2),
        ]);
    framework()
        .given(existing())
        .when(ConfigCommand::RemoveProviderKey {
            provider: Provider::Anthropic,
        })
        .then_expect_error(DomainError::NoProviderKey {
            provider: Provider::Anthropic,
        });
}

#[test]
fn events_keep_the_shape_the_log_has_always_had() {
    let stored = serde_json::json!({"CredentialRemoved": {"credential_id": id(2)}});
    let event: ConfigEvent = serde_json::from_value(stored.clone()).unwrap();
    assert_eq!(event, removed(2));
    assert_eq!(serde_json::to_value(&event).unwrap(), stored);
    let created: ConfigEvent = serde_json::from_value(
        serde_json::json!({"ConfigCreated": {"workspace": "w1", "owner": "user:alice"}}),
    )
    .unwrap();
    assert_eq!(created, self::created());
    // Version 2.0 of the event; the store upcasts 1.0's `ok` into `verdict`.
    let validated: ConfigEvent =
        serde_json::from_value(serde_json::json!({"CredentialValidated": {
        "credential_id": id(7), "verdict": "refused", "status": 401, "reason": "refused",
        "checked_at": "2026-11-30T10:00:00Z"}}))
        .unwrap();
    assert_eq!(validated.name(), "CredentialValidated");
    assert_eq!(cqrs_es::DomainEvent::event_version(&validated), "2.0");
    assert_eq!(cqrs_es::DomainEvent::event_version(&removed(2)), "1.0");
}

#[test]
fn shredding_forgets_everything_and_names_the_credentials_it_held() {
    framework()
        .given(existing())
        .when(ConfigCommand::Shred)
        .then_expect_events(vec![ConfigEvent::WorkspaceShredded {
            shredded_credentials: vec![CredentialId(id(2))],
        }]);
}

#[test]
fn a_configuration_that_does_not_exist_has_nothing_to_shred() {
    framework()
        .given_no_previous_events()
        .when(ConfigCommand::Shred)
        .then_expect_events(vec![]);
}

#[test]
fn a_shredded_configuration_starts_over_as_if_it_never_existed() {
    let mut shredded = AiModelConfig::default();
    for event in existing() {
        shredded.apply(event);
    }
    shredded.apply(ConfigEvent::WorkspaceShredded {
        shredded_credentials: vec![CredentialId(id(2))],
    });
    assert_eq!(shredded, AiModelConfig::default());

    let mut given = existing();
    given.push(ConfigEvent::WorkspaceShredded {
        shredded_credentials: vec![CredentialId(id(2))],
    });
    framework_with_ids_from(10)
        .given(given)
        .when(replace(vec![], None))
        .then_expect_error(DomainError::ConfigNotFound);
}
