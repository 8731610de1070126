//! Scenarios of a credential with a stream of its own.

use cqrs_es::test::TestFramework;
use secrecy::SecretString;

use super::*;
use crate::ids::{Owner, WorkspaceId};
use crate::testing::{id, services, ScriptedRegistry};

fn owner() -> ConfigId {
    ConfigId::new(WorkspaceId::parse("w1").unwrap(), Owner::Workspace)
}

fn name(raw: &str) -> CredentialName {
    CredentialName::parse(raw).unwrap()
}

fn sealed(suffix: &str, plain_len: usize) -> Ciphertext {
    Ciphertext(format!(
        "sealed:w1:aimc:w1/workspace:{}{suffix}:{plain_len}",
        CredentialId(id(5))
    ))
}

fn add(choice: NameChoice) -> CredentialCommand {
    CredentialCommand::Add {
        owner: owner(),
        credential_id: CredentialId(id(5)),
        credential: NewCredential {
            name: choice,
            provider: Provider::Openai,
            endpoint: Some("https://api.openai.com/v1".into()),
            access_key: Some("optional-access-key".into()),
            secret: "sk-proj-xxxxxxxxxxxx".into(),
        },
    }
}

fn added() -> CredentialEvent {
    CredentialEvent::Added {
        credential_id: CredentialId(id(5)),
        name: name("My OpenAI Config"),
        provider: Provider::Openai,
        endpoint: Some("https://api.openai.com/v1".into()),
        access_key: Some(sealed(":access_key", 19)),
        access_key_hint: Some(KeyHint::from_plain(&SecretString::from(
            "optional-access-key",
        ))),
        secret: sealed("", 20),
        hint: KeyHint::from_plain(&SecretString::from("sk-proj-xxxxxxxxxxxx")),
        number: Some(100),
        owner: Some(owner()),
    }
}

fn framework(registry: ScriptedRegistry) -> TestFramework<CredentialAggregate> {
    TestFramework::with(services(1, registry))
}

#[test]
fn a_credential_is_added_with_its_owner_number_and_both_keys_sealed() {
    framework(ScriptedRegistry::default())
        .given_no_previous_events()
        .when(add(NameChoice::Given(name("My OpenAI Config"))))
        .then_expect_events(vec![added()]);
}

#[test]
fn a_name_another_credential_holds_is_refused() {
    let registry = ScriptedRegistry::default();
    registry
        .held
        .lock()
        .unwrap()
        .insert("my openai config".into(), CredentialId(id(9)));
    framework(registry)
        .given_no_previous_events()
        .when(add(NameChoice::Given(name("MY OPENAI CONFIG"))))
        .then_expect_error(DomainError::NameTaken {
            name: name("MY OPENAI CONFIG"),
        });
}

#[test]
fn a_credential_is_added_once_and_its_id_is_not_reused_after_removal() {
    framework(ScriptedRegistry::default())
        .given(vec![added()])
        .when(add(NameChoice::Given(name("Other"))))
        .then_expect_error(DomainError::CredentialExists);
    framework(ScriptedRegistry::default())
        .given(vec![
            added(),
            CredentialEvent::Removed {
                credential_id: CredentialId(id(5)),
            },
        ])
        .when(add(NameChoice::Given(name("Other"))))
        .then_expect_error(DomainError::CredentialExists);
}

#[test]
fn a_rename_to_its_own_name_in_other_case_needs_no_free_name() {
    let registry = ScriptedRegistry::default();
    registry
        .held
        .lock()
        .unwrap()
        .insert("my openai config".into(), CredentialId(id(5)));
    framework(registry)
        .given(vec![added()])
        .when(CredentialCommand::Change {
            credential_id: CredentialId(id(5)),
            change: CredentialChange {
                name: Some(name("my openai CONFIG")),
                endpoint: Some(Some("https://api.openai.com/v1".into())),
                ..CredentialChange::default()
            },
        })
        .then_expect_events(vec![CredentialEvent::Renamed {
            credential_id: CredentialId(id(5)),
            name: name("my openai CONFIG"),
        }]);
}

#[test]
fn an_empty_new_secret_is_refused() {
    framework(ScriptedRegistry::default())
        .given(vec![added()])
        .when(CredentialCommand::Change {
            credential_id: CredentialId(id(5)),
            change: CredentialChange {
                secret: Some("   ".into()),
                ..CredentialChange::default()
            },
        })
        .then_expect_error(DomainError::EmptyKey);
}

#[test]
fn a_removed_credential_cannot_be_changed() {
    framework(ScriptedRegistry::default())
        .given(vec![
            added(),
            CredentialEvent::Removed {
                credential_id: CredentialId(id(5)),
            },
        ])
        .when(CredentialCommand::Remove {
            credential_id: CredentialId(id(5)),
        })
        .then_expect_error(DomainError::CredentialNotFound(CredentialId(id(5))));
}

fn added_under(version: u32) -> CredentialEvent {
    let CredentialEvent::Added {
        credential_id,
        name,
        provider,
        endpoint,
        access_key_hint,
        hint,
        number,
        owner,
        ..
    } = added()
    else {
        unreachable!()
    };
    CredentialEvent::Added {
        credential_id,
        name,
        provider,
        endpoint,
        access_key: Some(Ciphertext(format!("vault:v{version}:access"))),
        access_key_hint,
        secret: Ciphertext(format!("vault:v{version}:secret")),
        hint,
        number,
        owner,
    }
}

fn rewrap_to(key_version: u32) -> CredentialCommand {
    CredentialCommand::Rewrap {
        credential_id: CredentialId(id(5)),
        key_version,
    }
}

#[test]
fn keys_sealed_under_an_older_version_are_rewrapped_and_keep_their_hints() {
    framework(ScriptedRegistry::default())
        .given(vec![added_under(1)])
        .when(rewrap_to(2))
        .then_expect_events(vec![CredentialEvent::Rewrapped {
            credential_id: CredentialId(id(5)),
            secret: Ciphertext("vault:v2:secret".into()),
            access_key: Some(Ciphertext("vault:v2:access".into())),
            key_version: 2,
        }]);
}

#[test]
fn keys_already_under_the_version_are_left_alone_so_a_resumed_rotation_does_no_work_twice() {
    framework(ScriptedRegistry::default())
        .given(vec![added_under(2)])
        .when(rewrap_to(2))
        .then_expect_events(vec![]);
}

#[test]
fn a_credential_changed_after_the_rotation_began_is_rewrapped_only_where_still_stale() {
    framework(ScriptedRegistry::default())
        .given(vec![
            added_under(1),
            CredentialEvent::SecretReplaced {
                credential_id: CredentialId(id(5)),
                secret: Ciphertext("vault:v2:new-secret".into()),
                hint: KeyHint::from_plain(&SecretString::from("sk-proj-yyyyyyyyyyyy")),
            },
        ])
        .when(rewrap_to(2))
        .then_expect_events(vec![CredentialEvent::Rewrapped {
            credential_id: CredentialId(id(5)),
            secret: Ciphertext("vault:v2:new-secret".into()),
            access_key: Some(Ciphertext("vault:v2:access".into())),
            key_version: 2,
        }]);
}

#[test]
fn shredding_forgets_the_credential_once_and_its_id_stays_retired() {
    let shredded = CredentialEvent::WorkspaceShredded {
        shredded_credential: CredentialId(id(5)),
    };
    let shred = || CredentialCommand::Shred {
        credential_id: CredentialId(id(5)),
    };
    framework(ScriptedRegistry::default())
        .given(vec![added()])
        .when(shred())
        .then_expect_events(vec![shredded.clone()]);
    framework(ScriptedRegistry::default())
        .given(vec![added(), shredded.clone()])
        .when(shred())
        .then_expect_events(vec![]);
    framework(ScriptedRegistry::default())
        .given(vec![added(), shredded])
        .when(add(NameChoice::Given(name("Other"))))
        .then_expect_error(DomainError::CredentialExists);
}
