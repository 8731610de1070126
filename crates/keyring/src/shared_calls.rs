//! Concurrent commands on one workspace share their keyring calls (encryptions, decryptions of
//! client ciphertexts, a rotation's rewraps): the keys of requests that arrive while a call for
//! the workspace is out go together in the next call (one transit `batch_input`), the way
//! concurrent reads share one query. A request alone goes straight through, paying no
//! hand-over.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use secrecy::SecretString;
use tokio::sync::oneshot;
use tracing::Instrument;

use aimc_domain::{Ciphertext, KeyContext, WorkspaceId};

use crate::{ClientKey, DecryptionRecipe, KeyVersions, Keyring, KeyringError};

/// A [`Keyring`] whose encryptions, and decryptions of client ciphertexts, are shared between
/// the concurrent requests of a workspace.
pub struct SharedCalls {
    inner: Arc<dyn Keyring>,
    encryptions: Arc<Lanes<(SecretString, KeyContext), Ciphertext>>,
    client_decryptions: Arc<Lanes<String, Option<SecretString>>>,
    /// A rotation rewraps many credentials at once, each in a command of its own.
    rewraps: Arc<Lanes<(Ciphertext, KeyContext), Ciphertext>>,
}

impl SharedCalls {
    pub fn new(inner: Arc<dyn Keyring>) -> Self {
        SharedCalls {
            inner,
            encryptions: Arc::default(),
            client_decryptions: Arc::default(),
            rewraps: Arc::default(),
        }
    }
}

type Reply<O> = oneshot::Sender<Result<Vec<O>, KeyringError>>;

/// The most items a shared call gathers from the requests waiting for it; the rest wait for
/// the next call. Transit refuses a body of more than 1,000 JSON strings (OpenBao's
/// `max_request_json_strings`), 249 items of a rewrap or an encryption; a request larger than
/// this goes in a call of its own.
const SHARED_CALL_ITEMS: usize = 100;

/// A request's items, where its part of the answer goes, and its span, which the shared call's
/// span links to.
type Waiting<I, O> = Vec<(Vec<I>, Reply<O>, tracing::Span)>;

/// Per workspace with a call out, the requests waiting for the next one.
struct Lanes<I, O> {
    lanes: Mutex<HashMap<WorkspaceId, Waiting<I, O>>>,
}

impl<I, O> Default for Lanes<I, O> {
    fn default() -> Self {
        Lanes {
            lanes: Mutex::new(HashMap::new()),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Lanes<I, O> {
    /// Runs `call` on `items` now if no call for the workspace is out; otherwise waits for the
    /// next call, which carries the items of every request that waited.
    async fn submit<F, Fut>(
        self: &Arc<Self>,
        workspace: &WorkspaceId,
        items: Vec<I>,
        call: F,
    ) -> Result<Vec<O>, KeyringError>
    where
        F: Fn(WorkspaceId, Vec<I>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Vec<O>, KeyringError>> + Send,
    {
        let waiting = {
            let mut lanes = self.lanes.lock().expect("keyring lanes poisoned");
            match lanes.get_mut(workspace) {
                Some(queue) => {
                    let (reply, answer) = oneshot::channel();
                    queue.push((items, reply, tracing::Span::current()));
                    Err(answer)
                }
                None => {
                    lanes.insert(workspace.clone(), Vec::new());
                    Ok(items)
                }
            }
        };
        match waiting {
            Ok(items) => {
                // Whoever queued behind this call is served when it ends, however it ends: the
                // caller may be cancelled (its deadline passed, its client went away) mid-call,
                // and the lane must not stay claimed with nobody left to serve it.
                let _hand_over = HandOver {
                    lanes: self.clone(),
                    workspace: workspace.clone(),
                    call: Some(call.clone()),
                };
                call(workspace.clone(), items).await
            }
            Err(answer) => answer
                .await
                .map_err(|_| KeyringError::Failed("the shared keyring call was dropped".into()))?,
        }
    }

    /// Sends what queued up while a call was out, in the background, until nothing waits: the
    /// requests in the order they came, up to [`SHARED_CALL_ITEMS`] items a call.
    fn serve_waiting<F, Fut>(self: Arc<Self>, workspace: WorkspaceId, call: F)
    where
        F: Fn(WorkspaceId, Vec<I>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<Vec<O>, KeyringError>> + Send,
    {
        let waiting = {
            let mut lanes = self.lanes.lock().expect("keyring lanes poisoned");
            let Some(queue) = lanes.get_mut(&workspace).filter(|queue| !queue.is_empty()) else {
                lanes.remove(&workspace);
                return;
            };
            let mut items = 0;
            let fitting = queue
                .iter()
                .enumerate()
                .take_while(|(position, (request, ..))| {
                    items += request.len();
                    *position == 0 || items <= SHARED_CALL_ITEMS
                })
                .count();
            queue.drain(..fitting).collect::<Vec<_>>()
        };
        // The call serves several requests, so it is a trace of its own, linked from each of
        // theirs, rather than a child of whichever came first.
        let span = tracing::info_span!(
            parent: None,
            "shared keyring call",
            requests = waiting.len() as i64
        );
        for (_, _, request) in &waiting {
            span.follows_from(request);
        }
        tokio::spawn(
            async move {
                let mut sizes = Vec::with_capacity(waiting.len());
                let mut replies = Vec::with_capacity(waiting.len());
                let mut items = Vec::new();
                for (request, reply, _) in waiting {
                    sizes.push(request.len());
                    replies.push(reply);
                    items.extend(request);
                }
                let result = call(workspace.clone(), items).await;
                split(result, &sizes, replies);
                self.serve_waiting(workspace, call);
            }
            .instrument(span),
        );
    }
}

/// Serves a lane's waiting requests when the call that claimed it ends or is dropped.
struct HandOver<I: Send + 'static, O: Send + 'static, F, Fut>
where
    F: Fn(WorkspaceId, Vec<I>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Vec<O>, KeyringError>> + Send,
{
    lanes: Arc<Lanes<I, O>>,
    workspace: WorkspaceId,
    call: Option<F>,
}

impl<I: Send + 'static, O: Send + 'static, F, Fut> Drop for HandOver<I, O, F, Fut>
where
    F: Fn(WorkspaceId, Vec<I>) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<Vec<O>, KeyringError>> + Send,
{
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            self.lanes
                .clone()
                .serve_waiting(self.workspace.clone(), call);
        }
    }
}

/// Hands each waiting request its part of a shared call's answer. A failure fails them all,
/// with an item's index taken back to its own request.
fn split<O>(result: Result<Vec<O>, KeyringError>, sizes: &[usize], replies: Vec<Reply<O>>) {
    match result {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for (size, reply) in sizes.iter().zip(replies) {
                let _ = reply.send(Ok(outputs.by_ref().take(*size).collect()));
            }
        }
        Err(error) => {
            let mut start = 0;
            for (size, reply) in sizes.iter().zip(replies) {
                let own = match &error {
                    KeyringError::Undecryptable { index }
                        if (start..start + size).contains(index) =>
                    {
                        KeyringError::Undecryptable {
                            index: index - start,
                        }
                    }
                    KeyringError::Undecryptable { .. } => KeyringError::Failed(
                        "a key shared with this request's call did not decrypt".into(),
                    ),
                    other => other.clone(),
                };
                let _ = reply.send(Err(own));
                start += size;
            }
        }
    }
}

/// A keyring call within the request's deadline: past it, Vault counts as unavailable. Bounded
/// here, in the caller's task, because a shared call runs in a task of its own.
async fn within_deadline<T>(
    call: impl std::future::Future<Output = Result<T, KeyringError>>,
) -> Result<T, KeyringError> {
    aimc_domain::deadline::bounded("vault", call)
        .await
        .unwrap_or_else(|passed| Err(KeyringError::Unavailable(passed.to_string())))
}

#[async_trait]
impl Keyring for SharedCalls {
    async fn encrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(SecretString, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        let inner = self.inner.clone();
        within_deadline(
            self.encryptions
                .submit(workspace, items, move |workspace, items| {
                    let inner = inner.clone();
                    async move { inner.encrypt(&workspace, items).await }
                }),
        )
        .await
    }

    async fn decrypt(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<SecretString>, KeyringError> {
        within_deadline(self.inner.decrypt(workspace, items)).await
    }

    async fn client_key(&self, workspace: &WorkspaceId) -> Result<ClientKey, KeyringError> {
        within_deadline(self.inner.client_key(workspace)).await
    }

    async fn decrypt_from_client(
        &self,
        workspace: &WorkspaceId,
        ciphertexts: Vec<String>,
    ) -> Result<Vec<Option<SecretString>>, KeyringError> {
        let inner = self.inner.clone();
        within_deadline(self.client_decryptions.submit(
            workspace,
            ciphertexts,
            move |workspace, ciphertexts| {
                let inner = inner.clone();
                async move { inner.decrypt_from_client(&workspace, ciphertexts).await }
            },
        ))
        .await
    }

    async fn check(&self) -> Result<(), KeyringError> {
        within_deadline(self.inner.check()).await
    }

    async fn key_versions(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        within_deadline(self.inner.key_versions(workspace)).await
    }

    async fn rotate(&self, workspace: &WorkspaceId) -> Result<KeyVersions, KeyringError> {
        within_deadline(self.inner.rotate(workspace)).await
    }

    async fn rewrap(
        &self,
        workspace: &WorkspaceId,
        items: Vec<(Ciphertext, KeyContext)>,
    ) -> Result<Vec<Ciphertext>, KeyringError> {
        let inner = self.inner.clone();
        within_deadline(
            self.rewraps
                .submit(workspace, items, move |workspace, items| {
                    let inner = inner.clone();
                    async move { inner.rewrap(&workspace, items).await }
                }),
        )
        .await
    }

    async fn retire_versions_below(
        &self,
        workspace: &WorkspaceId,
        version: u32,
    ) -> Result<(), KeyringError> {
        within_deadline(self.inner.retire_versions_below(workspace, version)).await
    }

    async fn destroy_keys(&self, workspace: &WorkspaceId) -> Result<(), KeyringError> {
        within_deadline(self.inner.destroy_keys(workspace)).await
    }

    fn decryption_recipe(
        &self,
        workspace: &WorkspaceId,
        context: &KeyContext,
    ) -> Option<DecryptionRecipe> {
        self.inner.decryption_recipe(workspace, context)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    /// Encrypts to `ct:<plain>` after a pause, remembering the size of every call; a client
    /// ciphertext `bad` does not decrypt.
    #[derive(Default)]
    struct SlowKeyring {
        calls: Mutex<Vec<usize>>,
        in_flight: AtomicUsize,
    }

    #[async_trait]
    impl Keyring for SlowKeyring {
        async fn encrypt(
            &self,
            _workspace: &WorkspaceId,
            items: Vec<(SecretString, KeyContext)>,
        ) -> Result<Vec<Ciphertext>, KeyringError> {
            assert_eq!(
                self.in_flight.fetch_add(1, Ordering::SeqCst),
                0,
                "one call at a time"
            );
            // Released however the call ends, including when its caller is cancelled.
            struct Landed<'a>(&'a AtomicUsize);
            impl Drop for Landed<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let _landed = Landed(&self.in_flight);
            self.calls.lock().unwrap().push(items.len());
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(items
                .iter()
                .map(|(plain, _)| Ciphertext(format!("ct:{}", plain.expose_secret())))
                .collect())
        }

        async fn decrypt(
            &self,
            _: &WorkspaceId,
            _: Vec<(Ciphertext, KeyContext)>,
        ) -> Result<Vec<SecretString>, KeyringError> {
            unreachable!()
        }

        async fn client_key(&self, _: &WorkspaceId) -> Result<ClientKey, KeyringError> {
            unreachable!()
        }

        async fn decrypt_from_client(
            &self,
            _workspace: &WorkspaceId,
            ciphertexts: Vec<String>,
        ) -> Result<Vec<Option<SecretString>>, KeyringError> {
            self.calls.lock().unwrap().push(ciphertexts.len());
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(ciphertexts
                .into_iter()
                .map(|c| (c != "bad").then(|| SecretString::from(format!("plain:{c}"))))
                .collect())
        }

        async fn check(&self) -> Result<(), KeyringError> {
            Ok(())
        }

        fn decryption_recipe(&self, _: &WorkspaceId, _: &KeyContext) -> Option<DecryptionRecipe> {
            None
        }
    }

    fn keys(request: usize, count: usize) -> Vec<(SecretString, KeyContext)> {
        (0..count)
            .map(|n| {
                (
                    SecretString::from(format!("r{request}k{n}")),
                    KeyContext::for_system_key("openai"),
                )
            })
            .collect()
    }

    fn workspace(name: &str) -> WorkspaceId {
        WorkspaceId::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_request_alone_makes_its_own_call() {
        let slow = Arc::new(SlowKeyring::default());
        let shared = SharedCalls::new(slow.clone());

        let sealed = shared.encrypt(&workspace("w1"), keys(0, 2)).await.unwrap();

        assert_eq!(
            sealed,
            [Ciphertext("ct:r0k0".into()), Ciphertext("ct:r0k1".into())]
        );
        assert_eq!(*slow.calls.lock().unwrap(), [2]);
    }

    #[tokio::test]
    async fn requests_arriving_while_a_call_is_out_share_the_next_and_each_gets_its_own_keys() {
        let slow = Arc::new(SlowKeyring::default());
        let shared = Arc::new(SharedCalls::new(slow.clone()));
        let first = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.encrypt(&workspace("w1"), keys(0, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let later: Vec<_> = (1..=5)
            .map(|request| {
                let shared = shared.clone();
                tokio::spawn(async move {
                    shared
                        .encrypt(&workspace("w1"), keys(request, request))
                        .await
                })
            })
            .collect();

        assert_eq!(
            first.await.unwrap().unwrap(),
            [Ciphertext("ct:r0k0".into())]
        );
        for (request, handle) in (1..=5).zip(later) {
            let sealed = handle.await.unwrap().unwrap();
            let expected: Vec<_> = (0..request)
                .map(|n| Ciphertext(format!("ct:r{request}k{n}")))
                .collect();
            assert_eq!(sealed, expected, "request {request}");
        }
        assert_eq!(*slow.calls.lock().unwrap(), [1, 1 + 2 + 3 + 4 + 5]);
    }

    #[tokio::test]
    async fn a_shared_call_gathers_at_most_its_limit_and_the_rest_go_in_the_next() {
        let slow = Arc::new(SlowKeyring::default());
        let shared = Arc::new(SharedCalls::new(slow.clone()));
        let first = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.encrypt(&workspace("w1"), keys(0, 1)).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let sizes = [60, 30, 20, SHARED_CALL_ITEMS + 50, 5];
        let mut later = Vec::new();
        for (request, size) in (1..).zip(sizes) {
            let shared = shared.clone();
            later.push(tokio::spawn(async move {
                shared.encrypt(&workspace("w1"), keys(request, size)).await
            }));
            // In this order.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }

        first.await.unwrap().unwrap();
        for ((request, size), handle) in (1..).zip(sizes).zip(later) {
            let sealed = handle.await.unwrap().unwrap();
            assert_eq!(sealed.len(), size);
            assert_eq!(sealed[size - 1].0, format!("ct:r{request}k{}", size - 1));
        }
        assert_eq!(
            *slow.calls.lock().unwrap(),
            [1, 60 + 30, 20, SHARED_CALL_ITEMS + 50, 5],
            "a request too large for the limit goes alone"
        );
    }

    #[tokio::test]
    async fn a_call_whose_caller_gave_up_still_hands_over_to_those_waiting_behind_it() {
        let shared = Arc::new(SharedCalls::new(Arc::new(SlowKeyring::default())));
        let first = tokio::spawn({
            let shared = shared.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_millis(10),
                    shared.encrypt(&workspace("w1"), keys(0, 1)),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let queued = tokio::spawn({
            let shared = shared.clone();
            async move { shared.encrypt(&workspace("w1"), keys(1, 1)).await }
        });
        assert!(first.await.unwrap().is_err(), "the first caller gave up");
        let served = tokio::time::timeout(Duration::from_secs(2), queued)
            .await
            .expect("the request queued behind the abandoned call is served")
            .unwrap()
            .unwrap();
        assert_eq!(served[0].0, "ct:r1k0");
        let later = tokio::time::timeout(
            Duration::from_secs(2),
            shared.encrypt(&workspace("w1"), keys(2, 1)),
        )
        .await
        .expect("the workspace's lane is free again");
        assert_eq!(later.unwrap()[0].0, "ct:r2k0");
    }

    #[tokio::test]
    async fn workspaces_do_not_share_calls() {
        let slow = Arc::new(SlowKeyring::default());
        let shared = Arc::new(SharedCalls::new(slow.clone()));
        let (w1, w2) = (workspace("w1"), workspace("w2"));
        let (a, b) = tokio::join!(
            shared.decrypt_from_client(&w1, vec!["x".into()]),
            shared.decrypt_from_client(&w2, vec!["bad".into()])
        );

        assert!(a.unwrap()[0].is_some());
        assert!(
            b.unwrap()[0].is_none(),
            "an undecryptable key is its request's alone"
        );
        assert_eq!(*slow.calls.lock().unwrap(), [1, 1]);
    }

    #[test]
    fn a_failed_shared_call_names_the_failing_key_in_its_own_request() {
        let (first, first_answer) = oneshot::channel::<Result<Vec<()>, KeyringError>>();
        let (second, second_answer) = oneshot::channel();

        split(
            Err(KeyringError::Undecryptable { index: 3 }),
            &[2, 2],
            vec![first, second],
        );

        assert!(matches!(
            first_answer.blocking_recv().unwrap(),
            Err(KeyringError::Failed(_))
        ));
        assert_eq!(
            second_answer.blocking_recv().unwrap(),
            Err(KeyringError::Undecryptable { index: 1 })
        );
    }
}
