//! Realistic data through the public API, so events, snapshots, the read model and Vault's keys
//! are exactly what real clients would leave behind: every user config is seed 000's create
//! request, with two API keys encrypted client-side under the workspace's RSA key.

use std::collections::HashMap;
use std::sync::Arc;

use aimc_api::Role;
use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use rand::distributions::{Alphanumeric, DistString};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::Sha256;
use sqlx::PgPool;

/// Length of every generated API key: the size of a typical OpenAI project key.
pub const KEY_LENGTH: usize = 51;

pub struct User {
    pub workspace: String,
    pub sub: String,
    pub token: String,
    /// A key the write workload sends, encrypted for this user's workspace.
    pub new_key_ciphertext: String,
}

/// A workspace the S workloads create family B configurations in, and its admin's token.
pub struct Workspace {
    pub id: String,
    pub admin_token: String,
}

pub struct Population {
    pub users: Vec<User>,
    /// The user whose configuration has a long history.
    pub deep: User,
}

pub struct Seeder {
    pub client: reqwest::Client,
    pub base_url: String,
    pub jwt_secret: SecretString,
    pub concurrency: usize,
}

pub const SYSTEM_PROMPT: &str = "You are a helpful AI assistant.";

/// Seed 000's three models without `apiKeyEncrypted`, which keeps the keys they have.
pub fn seed_models_keeping_keys() -> Value {
    json!([
        {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "isPaid": true},
        {"provider": "Anthropic", "type": "chat", "model": "claude-2", "isPaid": true},
        {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
    ])
}

/// Seed 001's create request (family B) for `workspace`, named `name`, with a fresh secret.
pub fn llm_configuration(workspace: &str, name: &str) -> Value {
    json!({
        "name": name,
        "aiType": "OPENAI",
        "endpoint": "https://api.openai.com/v1",
        "secret": plain_key(),
        "workspaceId": workspace,
    })
}

/// Writes to one workspace contend with each other, so seeding them faster only adds retries.
const CREDENTIAL_SEEDING_CONCURRENCY: usize = 4;

pub fn plain_key() -> String {
    let prefix = "sk-proj-";
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), KEY_LENGTH - prefix.len())
    )
}

impl Seeder {
    pub fn token(&self, workspace: &str, sub: &str, role: Role) -> anyhow::Result<String> {
        Ok(aimc_api::mint_hs256_token(
            &self.jwt_secret,
            "aimc",
            "aimc",
            sub,
            HashMap::from([(workspace.to_owned(), role)]),
            None,
            24 * 3600,
        )?)
    }

    /// `users` user configs spread evenly over `workspaces` workspaces.
    pub async fn population(&self, workspaces: usize, users: usize) -> anyhow::Result<Population> {
        let workspace_names: Vec<String> =
            (0..workspaces).map(|i| format!("bench-{i:05}")).collect();
        // The first request in a workspace creates its keys in Vault (RSA generation is slow),
        // so keys are fetched once per workspace before the users pile in.
        let public_keys: HashMap<String, Arc<RsaPublicKey>> =
            futures::stream::iter(&workspace_names)
                .map(|workspace| async move {
                    let token = self.token(workspace, "keyholder", Role::Member)?;
                    let key = self.public_key(&token).await?;
                    anyhow::Ok((workspace.clone(), Arc::new(key)))
                })
                // Vault generates RSA keys on its own CPUs: more at once only makes each time out.
                .buffer_unordered(4)
                .try_collect()
                .await?;
        let users: Vec<User> = futures::stream::iter(0..users)
            .map(|i| {
                let workspace = workspace_names[i % workspaces].clone();
                let key = public_keys[&workspace].clone();
                async move {
                    self.create_user(workspace, format!("user-{i:06}"), &key)
                        .await
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let deep_workspace = workspace_names[0].clone();
        let deep = self
            .create_user(
                deep_workspace.clone(),
                "deep".into(),
                &public_keys[&deep_workspace],
            )
            .await?;
        Ok(Population { users, deep })
    }

    /// `count` workspaces named `<prefix>-<n>`, each holding `credentials` family B
    /// configurations created through the API.
    pub async fn workspaces_with_credentials(
        &self,
        prefix: &str,
        count: usize,
        credentials: usize,
    ) -> anyhow::Result<Vec<Workspace>> {
        let workspaces = (0..count)
            .map(|i| {
                let id = format!("{prefix}-{i:05}");
                let admin_token = self.token(&id, "admin", Role::Admin)?;
                Ok(Workspace { id, admin_token })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Name by name across the workspaces, so that creates running together mostly land in
        // different workspaces.
        let creates = (0..credentials).flat_map(|i| workspaces.iter().map(move |w| (w, i)));
        futures::stream::iter(creates)
            .map(|(workspace, i)| {
                let body = llm_configuration(&workspace.id, &format!("seeded {i}"));
                self.send(
                    self.client
                        .post(format!("{}/ai/llm", self.base_url))
                        .json(&body),
                    &workspace.admin_token,
                    200,
                )
            })
            .buffer_unordered(CREDENTIAL_SEEDING_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(workspaces)
    }

    /// The most family B configurations any of `workspaces` holds, as their admins list them.
    pub async fn most_credentials(&self, workspaces: &[Workspace]) -> anyhow::Result<usize> {
        futures::stream::iter(workspaces)
            .map(|workspace| async move {
                let listing = self
                    .send(
                        self.client.get(format!(
                            "{}/ai/llm?workspaceId={}",
                            self.base_url, workspace.id
                        )),
                        &workspace.admin_token,
                        200,
                    )
                    .await?;
                listed_configurations(&listing)
            })
            .buffer_unordered(self.concurrency)
            .try_fold(0, |most, count| async move { Ok(most.max(count)) })
            .await
    }

    async fn public_key(&self, token: &str) -> anyhow::Result<RsaPublicKey> {
        let body = self
            .send(
                self.client
                    .get(format!("{}/api/v1/encryption-key", self.base_url)),
                token,
                200,
            )
            .await?;
        let pem = body["pem"].as_str().context("encryption-key without pem")?;
        Ok(RsaPublicKey::from_public_key_pem(pem)?)
    }

    async fn create_user(
        &self,
        workspace: String,
        sub: String,
        key: &RsaPublicKey,
    ) -> anyhow::Result<User> {
        let token = self.token(&workspace, &sub, Role::Member)?;
        let body = json!({
            "models": [
                {"provider": "OpenAI", "type": "chat", "model": "gpt-4", "apiKeyEncrypted": seal(key, &plain_key())?, "isPaid": true},
                {"provider": "Anthropic", "type": "chat", "model": "claude-2", "apiKeyEncrypted": seal(key, &plain_key())?, "isPaid": true},
                {"provider": "Ollama", "type": "chat", "model": "llama3", "apiKeyEncrypted": null, "isPaid": false}
            ],
            "system_prompt": SYSTEM_PROMPT
        });
        self.send(
            self.client
                .post(format!("{}/api/v1/create/ai-model-config", self.base_url))
                .json(&body),
            &token,
            201,
        )
        .await?;
        Ok(User {
            workspace,
            sub,
            token,
            new_key_ciphertext: seal(key, &plain_key())?,
        })
    }

    /// Grows `user`'s history to at least `events` events: each command swaps 50 models for 50
    /// others, so a long history costs a hundred commands, not ten thousand.
    pub async fn grow_history(
        &self,
        pool: &PgPool,
        user: &User,
        events: i64,
    ) -> anyhow::Result<i64> {
        let aggregate_id = format!("{}/user:{}", user.workspace, user.sub);
        let mut round = 0;
        loop {
            let count = event_count(pool, &aggregate_id).await?;
            if count >= events {
                // Back to seed 000's three models, so commands on it are the size of any other.
                self.update_config(user, seed_models_keeping_keys()).await?;
                return event_count(pool, &aggregate_id).await;
            }
            let wanted = ((events - count) / 2).clamp(1, 50);
            let models: Vec<Value> = (0..wanted)
                .map(|i| json!({"provider": "Ollama", "type": "chat", "model": format!("m{round}-{i}"), "apiKeyEncrypted": null, "isPaid": false}))
                .collect();
            self.update_config(user, Value::Array(models)).await?;
            round += 1;
        }
    }

    async fn update_config(&self, user: &User, models: Value) -> anyhow::Result<Value> {
        self.send(
            self.client
                .put(format!("{}/api/v1/update/ai-model-config", self.base_url))
                .json(&json!({"models": models, "system_prompt": SYSTEM_PROMPT})),
            &user.token,
            200,
        )
        .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: &str,
        expected: u16,
    ) -> anyhow::Result<Value> {
        let request = request.bearer_auth(token);
        // A 503 is aimc saying "retry later" (Vault busy), which a client is expected to do.
        for attempt in 1.. {
            let retry = request.try_clone().context("request bodies are buffered")?;
            let response = retry.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            if status == expected {
                return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
            }
            if status != 503 || attempt == 5 {
                bail!("seeding expected {expected}, got {status}: {text}");
            }
            tokio::time::sleep(std::time::Duration::from_secs(attempt)).await;
        }
        unreachable!("the loop returns or fails by its fifth attempt")
    }
}

/// How many configurations a `GET /ai/llm` answer lists.
fn listed_configurations(listing: &Value) -> anyhow::Result<usize> {
    listing["aiLlms"]
        .as_array()
        .map(Vec::len)
        .with_context(|| format!("GET /ai/llm answered without aiLlms: {listing}"))
}

/// What a client does with the workspace's public key: RSA-OAEP-SHA256, standard base64.
pub fn seal(key: &RsaPublicKey, plain: &str) -> anyhow::Result<String> {
    let sealed = key.encrypt(
        &mut rand::thread_rng(),
        Oaep::new::<Sha256>(),
        plain.as_bytes(),
    )?;
    Ok(STANDARD.encode(sealed))
}

pub async fn event_count(pool: &PgPool, aggregate_id: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_listing_is_counted_by_its_configurations() {
        let listing = json!({"success": true, "aiLlms": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(super::listed_configurations(&listing).unwrap(), 2);
        assert!(super::listed_configurations(&json!({"success": false})).is_err());
    }
}
