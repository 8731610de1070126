use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{CredentialCommand, CredentialEvent};
use crate::credential::{self, Credential};
use crate::error::DomainError;
use crate::ids::{ConfigId, CredentialId};
use crate::services::ConfigServices;

/// A credential with a stream of its own: one of a workspace's named configurations (family B)
/// or a person's numbered keys (family D). Nothing else in its configuration depends on it, so
/// writers of different credentials never wait for, or retry because of, each other; its name
/// is kept unique by the registry.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialAggregate {
    /// The configuration it belongs to, once added.
    pub owner: Option<ConfigId>,
    pub credential: Option<Credential>,
    /// A removed credential's id is never used again.
    #[serde(default)]
    pub removed: bool,
}

impl CredentialAggregate {
    fn current(&self, id: CredentialId) -> Result<(&ConfigId, &Credential), DomainError> {
        match (&self.owner, &self.credential) {
            (Some(owner), Some(credential)) if credential.id == id => Ok((owner, credential)),
            _ => Err(DomainError::CredentialNotFound(id)),
        }
    }
}

impl Aggregate for CredentialAggregate {
    const TYPE: &'static str = "Credential";
    type Command = CredentialCommand;
    type Event = CredentialEvent;
    type Error = DomainError;
    type Services = ConfigServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let events = match command {
            CredentialCommand::Add {
                owner,
                credential_id,
                credential,
            } => {
                if self.owner.is_some() || self.removed {
                    return Err(DomainError::CredentialExists);
                }
                let owned_by = Some(owner.clone());
                vec![credential::add(&owner, credential_id, credential, owned_by, services).await?]
            }
            // Nothing to forget in a stream never begun, or already removed or shredded.
            CredentialCommand::Shred { credential_id } => match &self.credential {
                Some(current) if current.id == credential_id && !self.removed => {
                    vec![CredentialEvent::WorkspaceShredded {
                        shredded_credential: credential_id,
                    }]
                }
                _ => Vec::new(),
            },
            command => {
                let (owner, current) = self.current(command.credential_id())?;
                credential::decide(owner, current, command, services).await?
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match &event {
            CredentialEvent::Added { owner, .. } => self.owner = owner.clone(),
            CredentialEvent::Removed { .. } | CredentialEvent::WorkspaceShredded { .. } => {
                self.removed = true
            }
            _ => {}
        }
        let mut credentials = self
            .credential
            .take()
            .map(|credential| (credential.id, credential))
            .into_iter()
            .collect();
        credential::apply(&mut credentials, event);
        self.credential = credentials.into_values().next();
    }
}
