//! The keys an identity provider publishes at a JWKS URL (`AIMC_JWT_JWKS_URL`): fetched at
//! start, refreshed every `AIMC_JWT_JWKS_REFRESH_SECONDS`, and fetched again when a token names
//! a key not seen yet, at most once per `AIMC_JWT_JWKS_MIN_REFETCH_SECONDS` so that tokens with
//! made-up `kid`s cannot make aimc hammer the provider.
//!
//! The key set is replaced as a whole: a verification sees either the old set or the new one.
//! A fetch that fails keeps the last good set.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use url::Url;

use crate::auth::{published_keys, VerificationKey};
use crate::metrics::JWKS_FETCHES;

/// What one fetch may take, connecting included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document read; identity providers publish a few keys, a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why the keys are fetched, as the `aimc_jwks_fetches_total` metric labels it.
#[derive(Clone, Copy)]
enum FetchReason {
    Start,
    Refresh,
    UnknownKid,
}

impl FetchReason {
    fn label(self) -> &'static str {
        match self {
            FetchReason::Start => "start",
            FetchReason::Refresh => "refresh",
            FetchReason::UnknownKid => "unknown_kid",
        }
    }
}

/// One key set, and how many sets were installed before it (so a caller can tell that the set
/// changed while it waited).
struct KeySet {
    generation: u64,
    keys: Arc<Vec<VerificationKey>>,
}

pub(crate) struct PublishedKeys {
    url: Url,
    /// The URL as log lines show it: without user info and query, which may hold credentials.
    shown: String,
    client: reqwest::Client,
    current: RwLock<KeySet>,
    /// Held while a fetch for an unknown `kid` runs, so concurrent requests share one fetch.
    on_demand: Mutex<RefetchGate>,
}

impl PublishedKeys {
    /// Fetches the keys once; an error says why, naming neither a key nor the URL's
    /// credentials.
    pub(crate) async fn load(url: Url, min_refetch: Duration) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {}", error.without_url()))?;
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        shown.set_fragment(None);
        let published = PublishedKeys {
            shown: shown.to_string(),
            url,
            client,
            current: RwLock::new(KeySet {
                generation: 0,
                keys: Arc::new(Vec::new()),
            }),
            on_demand: Mutex::new(RefetchGate::new(min_refetch)),
        };
        published.refresh(FetchReason::Start).await?;
        Ok(Arc::new(published))
    }

    /// The keys in use, and their generation.
    pub(crate) fn current(&self) -> (u64, Arc<Vec<VerificationKey>>) {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (current.generation, current.keys.clone())
    }

    /// Fetches the keys and puts them in place of the current ones.
    async fn refresh(&self, reason: FetchReason) -> Result<(), String> {
        let fetched = self.fetch().await;
        let outcome = if fetched.is_ok() { "ok" } else { "error" };
        JWKS_FETCHES
            .with_label_values(&[reason.label(), outcome])
            .inc();
        let (keys, skipped) = fetched?;
        let count = keys.len();
        {
            let mut current = self
                .current
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            current.generation += 1;
            current.keys = Arc::new(keys);
        }
        tracing::debug!(
            url = %self.shown,
            reason = reason.label(),
            keys = count as i64,
            skipped = skipped as i64,
            "token verification keys fetched from the JWKS URL"
        );
        Ok(())
    }

    async fn fetch(&self) -> Result<(Vec<VerificationKey>, usize), String> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| format!("{}: {}", self.shown, describe(error)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.shown));
        }
        let mut document = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| format!("{}: {}", self.shown, describe(error)))?
        {
            if document.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!(
                    "{} answered with more than {MAX_DOCUMENT_BYTES} bytes",
                    self.shown
                ));
            }
            document.extend_from_slice(&chunk);
        }
        published_keys(&document).map_err(|reason| format!("{}: {reason}", self.shown))
    }

    /// Called for a token whose `kid` names no known key: fetches the keys again unless that
    /// was done less than the minimum interval ago for another such token. Concurrent callers
    /// share one fetch. True when a newer key set than generation `seen` is now in place.
    pub(crate) async fn refetch_for_unknown_kid(&self, seen: u64) -> bool {
        let mut gate = self.on_demand.lock().await;
        if self.current().0 != seen {
            // Fetched while this caller waited, by another caller or the periodic refresh.
            return true;
        }
        if !gate.try_pass(Instant::now()) {
            tracing::debug!(
                url = %self.shown,
                "a token names an unknown key; the JWKS URL was fetched for one too recently to fetch it again"
            );
            return false;
        }
        match self.refresh(FetchReason::UnknownKid).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "the JWKS URL could not be fetched for a token naming an unknown key; keeping the last keys");
                false
            }
        }
    }

    /// Refreshes the keys every `every` until the last handle on them is dropped.
    pub(crate) fn keep_fresh(self: &Arc<Self>, every: Duration) {
        let every = every.max(Duration::from_secs(1));
        let published = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(published) = published.upgrade() else {
                    return;
                };
                if let Err(error) = published.refresh(FetchReason::Refresh).await {
                    tracing::warn!(%error, "the JWKS URL could not be fetched; keeping the last keys");
                }
            }
        });
    }
}

/// A reqwest error with its causes (its own message is terse: "error sending request"), without
/// the URL.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// At most one pass per interval: the limit on fetches for unknown `kid`s.
pub(crate) struct RefetchGate {
    min_interval: Duration,
    last: Option<Instant>,
}

impl RefetchGate {
    pub(crate) fn new(min_interval: Duration) -> Self {
        RefetchGate {
            min_interval,
            last: None,
        }
    }

    /// True, and the time noted, when the last pass is at least the interval before `now`.
    pub(crate) fn try_pass(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.min_interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_lets_one_pass_through_per_interval() {
        let start = Instant::now();
        let mut gate = RefetchGate::new(Duration::from_secs(30));
        assert!(gate.try_pass(start), "the first fetch is never held back");
        for seconds in [0, 1, 10, 29] {
            assert!(
                !gate.try_pass(start + Duration::from_secs(seconds)),
                "{seconds} s after a fetch"
            );
        }
        assert!(gate.try_pass(start + Duration::from_secs(30)));
        assert!(!gate.try_pass(start + Duration::from_secs(31)));
        assert!(gate.try_pass(start + Duration::from_secs(75)));
    }

    #[test]
    fn a_clock_reading_older_than_the_last_pass_is_held_back() {
        let start = Instant::now() + Duration::from_secs(60);
        let mut gate = RefetchGate::new(Duration::from_secs(30));
        assert!(gate.try_pass(start));
        assert!(!gate.try_pass(start - Duration::from_secs(5)));
    }

    /// The kid and algorithm of each key a document yields, and how many entries it left out.
    fn usable(document: serde_json::Value) -> Result<(Vec<(String, String)>, usize), String> {
        let (keys, skipped) = published_keys(document.to_string().as_bytes())?;
        Ok((
            keys.iter()
                .map(|key| {
                    (
                        key.kid.clone().unwrap_or_default(),
                        format!("{:?}", key.algorithm),
                    )
                })
                .collect(),
            skipped,
        ))
    }

    const EC_X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
    const EC_Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";

    #[test]
    fn a_published_key_verifies_its_own_algorithm_or_those_of_its_type() {
        let pair = |kid: &str, alg: &str| (kid.to_owned(), alg.to_owned());
        let (keys, skipped) = usable(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "use": "sig", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "rsa-pinned", "alg": "PS384", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": EC_X},
        ]}))
        .unwrap();
        assert_eq!(
            keys,
            [
                pair("rsa", "RS256"),
                pair("rsa", "RS384"),
                pair("rsa", "RS512"),
                pair("rsa", "PS256"),
                pair("rsa", "PS384"),
                pair("rsa", "PS512"),
                pair("rsa-pinned", "PS384"),
                pair("ec", "ES256"),
                pair("ed", "EdDSA"),
            ]
        );
        assert_eq!(skipped, 0);
    }

    #[test]
    fn keys_that_cannot_verify_a_signature_are_left_out_and_the_others_kept() {
        let (keys, skipped) = usable(serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "wrong-curve", "alg": "ES384", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": EC_X, "y": EC_Y},
            {"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": EC_X},
            {"kty": "quantum", "kid": "future"},
            {"kty": "EC", "kid": "ok", "alg": "ES256", "crv": "P-256", "x": EC_X, "y": EC_Y},
        ]}))
        .unwrap();
        assert_eq!(keys, [("ok".to_owned(), "ES256".to_owned())]);
        assert_eq!(skipped, 7);
    }

    #[test]
    fn a_document_without_usable_keys_is_an_error() {
        for document in [
            serde_json::json!({"keys": []}),
            serde_json::json!({"keys": [{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]}),
            serde_json::json!({"issuer": "https://idp.example"}),
            serde_json::json!([1, 2, 3]),
        ] {
            assert!(usable(document.clone()).is_err(), "{document}");
        }
    }

    #[test]
    fn without_an_interval_every_fetch_passes() {
        let now = Instant::now();
        let mut gate = RefetchGate::new(Duration::ZERO);
        assert!(gate.try_pass(now));
        assert!(gate.try_pass(now));
    }
}
