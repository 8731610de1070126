//! Who and what: tenants, owners and the ids of the streams that hold their settings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::values::ValueError;

/// A tenant. Also names its Vault keys, hence the restricted alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.is_empty() {
            return Err(ValueError::Empty);
        }
        if raw.len() > Self::MAX_CHARS {
            return Err(ValueError::TooLong {
                max: Self::MAX_CHARS,
            });
        }
        let edges_alphanumeric = raw.starts_with(|c: char| c.is_ascii_alphanumeric())
            && raw.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !edges_alphanumeric
            || !raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ValueError::InvalidCharacters);
        }
        Ok(WorkspaceId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The keyring's workspace for the system fallback keys. No tenant can be called this:
    /// tenant ids start with a letter or digit.
    pub fn system() -> Self {
        WorkspaceId("_system".to_owned())
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whose settings a configuration holds: one person's, or the whole workspace's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    User(String),
    Workspace,
}

impl Owner {
    pub fn parse(raw: &str) -> Option<Self> {
        if raw == "workspace" {
            Some(Owner::Workspace)
        } else {
            raw.strip_prefix("user:")
                .filter(|sub| !sub.is_empty())
                .map(|sub| Owner::User(sub.to_owned()))
        }
    }
}

impl Owner {
    /// How the owner appears in names people read: the subject, or `Workspace`; never the
    /// internal `user:` form.
    pub fn label(&self) -> &str {
        match self {
            Owner::User(sub) => sub,
            Owner::Workspace => "Workspace",
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::User(sub) => write!(f, "user:{sub}"),
            Owner::Workspace => f.write_str("workspace"),
        }
    }
}

/// The id of a configuration, and of its event stream: `<workspace>/<owner>`. The workspace
/// comes first so one tenant's streams share a prefix, and it cannot contain '/', so the split
/// is unambiguous whatever the subject holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigId {
    pub workspace: WorkspaceId,
    pub owner: Owner,
}

impl ConfigId {
    pub fn new(workspace: WorkspaceId, owner: Owner) -> Self {
        ConfigId { workspace, owner }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (workspace, owner) = raw.split_once('/')?;
        Some(ConfigId {
            workspace: WorkspaceId::parse(workspace).ok()?,
            owner: Owner::parse(owner)?,
        })
    }
}

impl fmt::Display for ConfigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.workspace, self.owner)
    }
}

/// Stored as its text form, as the events written before it was typed have it.
impl Serialize for ConfigId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ConfigId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        ConfigId::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("not a configuration id: {raw:?}")))
    }
}

impl Serialize for Owner {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Owner::parse(&raw).ok_or_else(|| serde::de::Error::custom(format!("not an owner: {raw:?}")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CredentialId(pub Uuid);

impl fmt::Display for CredentialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CredentialId {
    type Err = uuid::Error;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(raw).map(CredentialId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ModelId(pub Uuid);

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An event stream: a configuration's, or a credential's that has one of its own (see
/// [`crate::CredentialAggregate`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamId {
    Config(ConfigId),
    /// `<workspace>/credentials/<id>`: no owner is called `credentials/…`, so this never reads
    /// as a configuration's id.
    Credential {
        workspace: WorkspaceId,
        credential: CredentialId,
    },
}

impl StreamId {
    pub fn workspace(&self) -> &WorkspaceId {
        match self {
            StreamId::Config(config) => &config.workspace,
            StreamId::Credential { workspace, .. } => workspace,
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let (workspace, rest) = raw.split_once('/')?;
        match rest.strip_prefix("credentials/") {
            Some(credential) => Some(StreamId::Credential {
                workspace: WorkspaceId::parse(workspace).ok()?,
                credential: credential.parse().ok()?,
            }),
            None => ConfigId::parse(raw).map(StreamId::Config),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamId::Config(config) => config.fmt(f),
            StreamId::Credential {
                workspace,
                credential,
            } => write!(f, "{workspace}/credentials/{credential}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_id_round_trips_even_when_the_subject_contains_slashes() {
        let id = ConfigId::new(
            WorkspaceId::parse("w1").unwrap(),
            Owner::User("auth0|a/b".into()),
        );
        assert_eq!(id.to_string(), "w1/user:auth0|a/b");
        assert_eq!(ConfigId::parse(&id.to_string()), Some(id.clone()));
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::json!("w1/user:auth0|a/b")
        );
    }

    #[test]
    fn stream_ids_tell_configurations_from_credentials() {
        let credential = StreamId::Credential {
            workspace: WorkspaceId::parse("w1").unwrap(),
            credential: CredentialId(Uuid::from_u128(7)),
        };
        assert_eq!(
            credential.to_string(),
            "w1/credentials/00000000-0000-0000-0000-000000000007"
        );
        assert_eq!(StreamId::parse(&credential.to_string()), Some(credential));
        assert_eq!(
            StreamId::parse("w1/workspace"),
            Some(StreamId::Config(ConfigId::new(
                WorkspaceId::parse("w1").unwrap(),
                Owner::Workspace
            )))
        );
        assert_eq!(StreamId::parse("w1/credentials/not-a-uuid"), None);
    }

    #[test]
    fn workspace_ids_are_restricted_to_a_path_safe_alphabet() {
        assert!(WorkspaceId::parse("acme-prod_1.eu").is_ok());
        assert_eq!(
            WorkspaceId::parse("a/b"),
            Err(ValueError::InvalidCharacters)
        );
        // Vault key names must start and end with a word character.
        assert_eq!(
            WorkspaceId::parse("acme-"),
            Err(ValueError::InvalidCharacters)
        );
        assert_eq!(
            WorkspaceId::parse(".acme"),
            Err(ValueError::InvalidCharacters)
        );
        assert_eq!(WorkspaceId::parse(""), Err(ValueError::Empty));
    }
}
