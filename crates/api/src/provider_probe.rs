//! Testing a credential: one authenticated call to the provider's cheapest endpoint (its model
//! list) at the credential's endpoint, behind a guard against server-side request forgery.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use aimc_domain::Provider;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::{ExposeSecret, SecretString};
use tracing::Instrument;

/// What a test found. `reason` never contains the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub ok: bool,
    pub status: Option<u16>,
    pub reason: String,
}

impl CheckOutcome {
    fn failed(status: Option<u16>, reason: impl Into<String>) -> Self {
        CheckOutcome {
            ok: false,
            status,
            reason: reason.into(),
        }
    }
}

pub struct ProviderChecker {
    allow_private: bool,
    timeout: Duration,
}

/// Where a provider's API lives when the credential names no endpoint.
fn default_endpoint(provider: Provider) -> &'static str {
    match provider {
        Provider::Openai | Provider::Other | Provider::AzureOpenai => "https://api.openai.com/v1",
        Provider::Anthropic => "https://api.anthropic.com",
        Provider::Google => "https://generativelanguage.googleapis.com",
        Provider::Openrouter => "https://openrouter.ai/api",
        Provider::Ollama => "http://127.0.0.1:11434",
        Provider::Aws => "https://bedrock.us-east-1.amazonaws.com",
    }
}

/// The model-list URL under `base`, whether or not `base` already ends in the API version.
fn probe_url(provider: Provider, base: &str) -> String {
    let base = base.trim_end_matches('/');
    let under = |version: &str, rest: &str| {
        if base.ends_with(version) {
            format!("{base}{rest}")
        } else {
            format!("{base}{version}{rest}")
        }
    };
    match provider {
        Provider::Openai
        | Provider::AzureOpenai
        | Provider::Other
        | Provider::Anthropic
        | Provider::Aws => under("/v1", "/models"),
        Provider::Google => under("/v1beta", "/models"),
        // OpenRouter's model list is public; its key endpoint is the authenticated one.
        Provider::Openrouter if base.ends_with("/api/v1") => format!("{base}/key"),
        Provider::Openrouter => under("/api", "/v1/key"),
        Provider::Ollama => format!("{base}/api/tags"),
    }
}

fn auth_headers(provider: Provider, secret: &SecretString) -> Result<HeaderMap, CheckOutcome> {
    let mut headers = HeaderMap::new();
    let value = |raw: String| {
        let mut value = HeaderValue::from_str(&raw).map_err(|_| {
            CheckOutcome::failed(None, "the key contains characters a header cannot carry")
        })?;
        value.set_sensitive(true);
        Ok::<_, CheckOutcome>(value)
    };
    match provider {
        Provider::Anthropic => {
            headers.insert("x-api-key", value(secret.expose_secret().to_owned())?);
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        Provider::Google => {
            headers.insert("x-goog-api-key", value(secret.expose_secret().to_owned())?);
        }
        Provider::Ollama => {}
        _ => {
            headers.insert(
                AUTHORIZATION,
                value(format!("Bearer {}", secret.expose_secret()))?,
            );
        }
    }
    Ok(headers)
}

/// Addresses a service must not be made to call on a user's behalf: loopback, private,
/// link-local (cloud metadata lives at 169.254.169.254), shared, unspecified, multicast.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            // IPv4 reached through IPv6: mapped, compatible, NAT64 (64:ff9b::/96), 6to4 (2002::/16).
            if let Some(v4) = v6.to_ipv4() {
                if !v6.is_loopback() && !v6.is_unspecified() {
                    return is_private(IpAddr::V4(v4));
                }
            }
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = segments[6].to_be_bytes();
                let [c, d] = segments[7].to_be_bytes();
                return is_private(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            if segments[0] == 0x2002 {
                let [a, b] = segments[1].to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return is_private(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            let first = segments[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
        }
    }
}

impl ProviderChecker {
    pub fn new(allow_private: bool, timeout: Duration) -> Self {
        ProviderChecker {
            allow_private,
            timeout,
        }
    }

    /// Resolves the host once, refuses private targets, and pins the checked address so a
    /// second lookup cannot swap in another one (DNS rebinding).
    async fn guarded_target(
        &self,
        url: &reqwest::Url,
    ) -> Result<(String, SocketAddr), CheckOutcome> {
        let host = url
            .host_str()
            .ok_or_else(|| CheckOutcome::failed(None, "the endpoint has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| CheckOutcome::failed(None, format!("cannot resolve {bare}")))?
                .collect(),
        };
        let first = *addresses
            .first()
            .ok_or_else(|| CheckOutcome::failed(None, format!("{bare} has no address")))?;
        if !self.allow_private {
            if let Some(private) = addresses.iter().find(|address| is_private(address.ip())) {
                return Err(CheckOutcome::failed(
                    None,
                    format!(
                        "refused to call {}: it is a private, loopback or link-local address (AIMC_ALLOW_PRIVATE_ENDPOINTS allows it)",
                        private.ip()
                    ),
                ));
            }
        }
        Ok((host, first))
    }

    /// The whole check, name resolution included, within the timeout.
    #[tracing::instrument(skip_all, fields(provider = %provider))]
    pub async fn check(
        &self,
        provider: Provider,
        endpoint: Option<&str>,
        secret: &SecretString,
    ) -> CheckOutcome {
        match tokio::time::timeout(self.timeout, self.check_within(provider, endpoint, secret))
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => CheckOutcome::failed(
                None,
                format!("no answer within {} s", self.timeout.as_secs()),
            ),
        }
    }

    async fn check_within(
        &self,
        provider: Provider,
        endpoint: Option<&str>,
        secret: &SecretString,
    ) -> CheckOutcome {
        if provider == Provider::Aws {
            return CheckOutcome::failed(
                None,
                "AWS Bedrock credentials need SigV4 signing, which this check does not do yet",
            );
        }
        let raw = probe_url(provider, endpoint.unwrap_or(default_endpoint(provider)));
        let Ok(url) = reqwest::Url::parse(&raw) else {
            return CheckOutcome::failed(None, "the endpoint is not a URL");
        };
        if !matches!(url.scheme(), "http" | "https") {
            return CheckOutcome::failed(None, "the endpoint must be http(s)");
        }
        let (host, address) = match self.guarded_target(&url).await {
            Ok(target) => target,
            Err(refused) => return refused,
        };
        let headers = match auth_headers(provider, secret) {
            Ok(headers) => headers,
            Err(refused) => return refused,
        };
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the name itself and undo the pinning above.
            .no_proxy()
            .timeout(self.timeout)
            .resolve(host.trim_start_matches('[').trim_end_matches(']'), address)
            .build()
        {
            Ok(client) => client,
            Err(_) => return CheckOutcome::failed(None, "cannot build the HTTP client"),
        };
        // A CLIENT span as OpenTelemetry's HTTP conventions have it, without `url.full`: a
        // stored endpoint may carry user info or a key in its query.
        let span = tracing::info_span!(
            "provider check",
            otel.name = "GET",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "GET",
            http.response.status_code = tracing::field::Empty,
            server.address = host.as_str(),
            server.port = url.port_or_known_default().map(i64::from),
            url.scheme = url.scheme(),
            error.type = tracing::field::Empty,
        );
        let sent = client
            .get(url)
            .headers(headers)
            .send()
            .instrument(span.clone())
            .await;
        match &sent {
            Ok(response) => {
                span.record(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                );
                if !response.status().is_success() {
                    span.record("error.type", response.status().as_str());
                    span.record("otel.status_code", "error");
                }
            }
            Err(error) => {
                span.record(
                    "error.type",
                    if error.is_timeout() {
                        "timeout"
                    } else {
                        "_OTHER"
                    },
                );
                span.record("otel.status_code", "error");
            }
        }
        match sent {
            Ok(response) if response.status().is_success() => CheckOutcome {
                ok: true,
                status: Some(response.status().as_u16()),
                reason: format!("{} accepted the key", provider.display_name()),
            },
            Ok(response) => {
                let status = response.status();
                CheckOutcome::failed(
                    Some(status.as_u16()),
                    format!("{} answered {status}", provider.display_name()),
                )
            }
            Err(error) if error.is_timeout() => CheckOutcome::failed(
                None,
                format!("no answer within {} s", self.timeout.as_secs()),
            ),
            Err(_) => CheckOutcome::failed(None, "could not connect to the endpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_list_is_found_whether_or_not_the_endpoint_names_the_version() {
        assert_eq!(
            probe_url(Provider::Openai, "https://api.openai.com/v1"),
            "https://api.openai.com/v1/models"
        );
        assert_eq!(
            probe_url(Provider::Openai, "http://h:1/"),
            "http://h:1/v1/models"
        );
        assert_eq!(
            probe_url(Provider::Anthropic, "https://api.anthropic.com"),
            "https://api.anthropic.com/v1/models"
        );
        assert_eq!(
            probe_url(Provider::Google, "https://g"),
            "https://g/v1beta/models"
        );
        assert_eq!(
            probe_url(Provider::Openrouter, "https://openrouter.ai/api/v1"),
            "https://openrouter.ai/api/v1/key"
        );
        assert_eq!(
            probe_url(Provider::Openrouter, "https://openrouter.ai"),
            "https://openrouter.ai/api/v1/key"
        );
        assert_eq!(
            probe_url(Provider::Ollama, "http://o:11434"),
            "http://o:11434/api/tags"
        );
    }

    #[test]
    fn private_loopback_link_local_and_unique_local_addresses_are_private() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:10.0.0.1",
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }
}
