//! Which provider and model serve each task (seed 004).

use std::collections::HashSet;

use super::{AiModelConfig, ConfigEvent};
use crate::error::DomainError;
use crate::ids::ConfigId;
use crate::services::ConfigServices;
use crate::values::{ModelName, Provider, TaskName};

impl AiModelConfig {
    /// The differences between the assignments and `assignments`; every provider named must
    /// have a key, here or in a credential of the owner's own.
    pub(super) async fn assign_tasks(
        &self,
        id: &ConfigId,
        assignments: Vec<(TaskName, Provider, ModelName)>,
        services: &ConfigServices,
    ) -> Result<Vec<ConfigEvent>, DomainError> {
        let mut seen = HashSet::new();
        for (task, ..) in &assignments {
            if !seen.insert(task.clone()) {
                return Err(DomainError::DuplicateTask { task: task.clone() });
            }
        }
        let keyed_here: HashSet<Provider> = self.credentials.values().map(|c| c.provider).collect();
        let elsewhere: HashSet<Provider> = if assignments
            .iter()
            .all(|(_, provider, _)| keyed_here.contains(provider))
        {
            HashSet::new()
        } else {
            services
                .directory
                .providers_with_keys(id)
                .await?
                .into_iter()
                .collect()
        };
        if let Some((task, provider, _)) = assignments
            .iter()
            .find(|(_, p, _)| !keyed_here.contains(p) && !elsewhere.contains(p))
        {
            return Err(DomainError::ProviderNotConfigured {
                task: task.clone(),
                provider: *provider,
            });
        }
        let mut events = Vec::new();
        for task in self.task_assignments.keys().filter(|t| !seen.contains(*t)) {
            events.push(ConfigEvent::TaskUnassigned { task: task.clone() });
        }
        for (task, provider, model) in assignments {
            if self.task_assignments.get(&task) != Some(&(provider, model.clone())) {
                events.push(ConfigEvent::TaskAssigned {
                    task,
                    provider,
                    model,
                });
            }
        }
        Ok(events)
    }
}
