//! Deciding credentials' names against the workspace's registry.

use std::collections::HashSet;

use crate::credential::commands::NameChoice;
use crate::error::DomainError;
use crate::ids::{CredentialId, WorkspaceId};
use crate::services::ConfigServices;
use crate::values::{CredentialName, NameKey};

/// A name to decide for a new credential.
pub(crate) struct NameRequest<'a> {
    pub choice: &'a NameChoice,
    pub credential: CredentialId,
    pub number: i64,
}

/// The names of new credentials, in one registry lookup: the caller's name if no other
/// credential holds it, else a refusal; a generated name, with a suffix when the plain one is
/// taken (by another credential, or by one created alongside).
pub(crate) async fn choose_names(
    services: &ConfigServices,
    workspace: &WorkspaceId,
    requests: &[NameRequest<'_>],
) -> Result<Vec<CredentialName>, DomainError> {
    let candidates: Vec<Vec<CredentialName>> = requests.iter().map(candidates).collect();
    let keys: Vec<NameKey> = candidates
        .iter()
        .flatten()
        .map(CredentialName::key)
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut holders = services.names.holders(workspace, &keys).await?.into_iter();
    let mut chosen: HashSet<NameKey> = HashSet::new();
    let mut names = Vec::with_capacity(requests.len());
    for (request, candidates) in requests.iter().zip(candidates) {
        let mut free = None;
        for candidate in candidates {
            let holder = holders.next().flatten();
            let key = candidate.key();
            let available =
                holder.is_none_or(|holder| holder == request.credential) && !chosen.contains(&key);
            if free.is_none() && available {
                chosen.insert(key);
                free = Some(candidate);
            }
        }
        names.push(match (free, request.choice) {
            (Some(name), _) => name,
            (None, NameChoice::Given(name)) => {
                return Err(DomainError::NameTaken { name: name.clone() })
            }
            (None, NameChoice::Generated { .. }) => return Err(DomainError::NoFreeName),
        });
    }
    Ok(names)
}

/// Refuses a name another credential of the workspace holds.
pub(crate) async fn ensure_free(
    services: &ConfigServices,
    workspace: &WorkspaceId,
    name: &CredentialName,
    credential: CredentialId,
) -> Result<(), DomainError> {
    let holder = services
        .names
        .holders(workspace, &[name.key()])
        .await?
        .pop()
        .flatten();
    match holder {
        Some(holder) if holder != credential => Err(DomainError::NameTaken { name: name.clone() }),
        _ => Ok(()),
    }
}

/// The names a request may take, in order of preference.
fn candidates(request: &NameRequest<'_>) -> Vec<CredentialName> {
    match request.choice {
        NameChoice::Given(name) => vec![name.clone()],
        NameChoice::Generated { base, numbered } => {
            let base = if *numbered {
                format!("{base} #{}", request.number)
            } else {
                base.clone()
            };
            let short = request.credential.0.simple().to_string();
            let suffix = format!(" ({})", &short[short.len() - 8..]);
            vec![generated(&base, ""), generated(&base, &suffix)]
        }
    }
}

/// `base` followed by `suffix`, the base shortened so the whole is a valid name.
fn generated(base: &str, suffix: &str) -> CredentialName {
    let room = CredentialName::MAX_CHARS - suffix.chars().count();
    let base: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(room)
        .collect();
    CredentialName::parse(&format!("{}{suffix}", base.trim()))
        .or_else(|_| CredentialName::parse(&format!("key{suffix}")))
        .expect("\"key\" and a short suffix make a valid name")
}
