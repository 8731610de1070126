//! Telemetry as tools read it: the Prometheus text exposition at `/metrics`. The spans a
//! collector receives are checked against the binary itself, in
//! `crates/server/tests/otlp_export.rs`.

use std::collections::{BTreeMap, HashSet};

use aimc_api::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

/// The Prometheus text exposition format (version 0.0.4), parsed as a scraper reads it.
mod exposition {
    use std::collections::{BTreeMap, HashMap};

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    pub struct Exposition {
        /// Metric family → its `# TYPE`.
        pub types: HashMap<String, String>,
        pub samples: Vec<Sample>,
    }

    impl Exposition {
        /// The samples of `name` whose labels include every one of `labels`.
        pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
            self.samples
                .iter()
                .filter(|sample| sample.name == name)
                .filter(|sample| {
                    labels.iter().all(|(key, value)| {
                        sample.labels.get(*key).map(String::as_str) == Some(value)
                    })
                })
                .collect()
        }

        /// The value of the one sample of `name` with exactly these labels.
        pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
            let found: Vec<&Sample> = self
                .find(name, labels)
                .into_iter()
                .filter(|sample| sample.labels.len() == labels.len())
                .collect();
            assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
            found[0].value
        }
    }

    /// The family a sample belongs to: histograms and summaries expose theirs under suffixes.
    fn family<'a>(name: &'a str, types: &HashMap<String, String>) -> Option<&'a str> {
        if types.contains_key(name) {
            return Some(name);
        }
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let family = name.strip_suffix(suffix)?;
            matches!(
                types.get(family).map(String::as_str),
                Some("histogram" | "summary")
            )
            .then_some(family)
        })
    }

    fn is_name_start(c: char) -> bool {
        c.is_ascii_alphabetic() || c == '_' || c == ':'
    }

    fn is_name_char(c: char) -> bool {
        is_name_start(c) || c.is_ascii_digit()
    }

    /// Splits a metric or label name off the front of `rest`.
    fn name(rest: &str) -> Result<(&str, &str), String> {
        if !rest.starts_with(is_name_start) {
            return Err(format!("expected a name at {rest:?}"));
        }
        let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
        Ok(rest.split_at(end))
    }

    /// `{name="value",...}` at the front of `rest`, with `\\`, `\"` and `\n` unescaped.
    fn labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), String> {
        let mut labels = BTreeMap::new();
        rest = rest.strip_prefix('{').ok_or("expected {")?;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                return Ok((labels, after));
            }
            let (key, after) = name(rest)?;
            let after = after
                .trim_start()
                .strip_prefix('=')
                .ok_or_else(|| format!("expected = after label {key}"))?;
            let mut chars = after
                .trim_start()
                .strip_prefix('"')
                .ok_or_else(|| format!("expected a quoted value for label {key}"))?
                .char_indices();
            let mut value = String::new();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => return Err(format!("bad escape {other:?} in label {key}")),
                    },
                    Some((index, '"')) => break index,
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("unterminated value of label {key}")),
                }
            };
            let quoted = after.trim_start().strip_prefix('"').unwrap();
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            rest = quoted[end + 1..].trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }

    fn number(word: &str) -> Result<f64, String> {
        match word {
            "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            "NaN" => Ok(f64::NAN),
            word => word
                .parse()
                .map_err(|_| format!("{word:?} is not a number")),
        }
    }

    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut types = HashMap::new();
        let mut samples = Vec::new();
        for (number_of_line, line) in text.lines().enumerate() {
            let at = |error: String| format!("line {}: {error}: {line:?}", number_of_line + 1);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let words: Vec<&str> = comment.split_whitespace().collect();
                if let ["TYPE", family, kind] = words[..] {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if types.insert(family.to_owned(), kind.to_owned()).is_some() {
                        return Err(at(format!("{family} typed twice")));
                    }
                }
                continue;
            }
            let (metric, rest) = name(line).map_err(at)?;
            let (labels, rest) = if rest.starts_with('{') {
                labels(rest).map_err(at)?
            } else {
                (BTreeMap::new(), rest)
            };
            let mut words = rest.split_whitespace();
            let value =
                number(words.next().ok_or("no value").map_err(|e| at(e.into()))?).map_err(at)?;
            if let Some(timestamp) = words.next() {
                timestamp
                    .parse::<i64>()
                    .map_err(|_| at(format!("bad timestamp {timestamp}")))?;
            }
            if words.next().is_some() {
                return Err(at("text after the timestamp".into()));
            }
            if family(metric, &types).is_none() {
                return Err(at(format!("{metric} has no # TYPE before it")));
            }
            samples.push(Sample {
                name: metric.to_owned(),
                labels,
                value,
            });
        }
        Ok(Exposition { types, samples })
    }

    #[test]
    fn labels_with_escapes_histograms_and_untyped_samples() {
        let parsed = parse(
            "# HELP a_total A \"counter\".\n# TYPE a_total counter\n\
             a_total{route=\"/x/{id}\",note=\"say \\\"hi\\\"\\\\\\n\",} 3 1700000000000\n\
             # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n",
        )
        .unwrap();
        assert_eq!(parsed.types["h"], "histogram");
        assert_eq!(
            parsed.value(
                "a_total",
                &[("route", "/x/{id}"), ("note", "say \"hi\"\\\n")]
            ),
            3.0
        );
        assert_eq!(parsed.value("h_bucket", &[("le", "+Inf")]), 2.0);
        assert!(parse("b 1\n").is_err(), "a sample without a type");
        assert!(
            parse("# TYPE c gauge\nc{x=\"1} 1\n").is_err(),
            "an unterminated label"
        );
        assert!(
            parse("# TYPE c gauge\nc one\n").is_err(),
            "a value that is no number"
        );
    }
}

/// A sample's labels but `le`, in order.
type Labels = Vec<(String, String)>;

/// Each histogram of `name` (one per label set but `le`): its buckets rise with `le` and end in
/// `+Inf`, which equals its count.
fn assert_well_formed_histograms(scrape: &exposition::Exposition, name: &str) {
    let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for bucket in scrape.find(&format!("{name}_bucket"), &[]) {
        let le: f64 = match bucket.labels["le"].as_str() {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap(),
        };
        let labels = bucket
            .labels
            .iter()
            .filter(|(key, _)| *key != "le")
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        series.entry(labels).or_default().push((le, bucket.value));
    }
    assert!(!series.is_empty(), "no {name} histogram");
    for (labels, mut buckets) in series {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1),
            "{name} {labels:?}"
        );
        let (le, total) = *buckets.last().unwrap();
        assert_eq!(le, f64::INFINITY, "{name} {labels:?}");
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(scrape.value(&format!("{name}_count"), &labels), total);
        assert!(scrape.value(&format!("{name}_sum"), &labels) >= 0.0);
    }
}

#[tokio::test]
async fn metrics_name_routes_by_template_and_measure_vault_the_pool_conflicts_and_projection_lag() {
    // Given traffic on routes with path parameters, Vault work, racing writers, and an event
    // the read model cannot apply.
    let app = spawn_app_with(|settings| settings.catch_up_interval_seconds = 1).await;
    let replica = spawn_replica(&app).await;
    let admin = app.token("ada", Role::Admin);
    let token = app.token("alice", Role::Member);
    app.remember_secret("sk-proj-metrics-secret-0123456789");
    let created = app
        .post(
            "/ai/llm",
            &admin,
            json!({"name": "Metrics", "aiType": "OPENAI", "endpoint": "https://api.openai.com/v1",
                   "secret": "sk-proj-metrics-secret-0123456789", "workspaceId": app.workspace}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.body["aiLlmId"].as_str().unwrap().to_owned();
    let renamed = app
        .put(&format!("/ai/llm/{id}"), &admin, json!({"name": "Renamed"}))
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
    let deleted = app
        .request(Method::DELETE, &format!("/ai/llm/{id}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    app.request(Method::GET, "/no/such/route/12345", None, None)
        .await;
    create_seed_config(&app, &token).await;
    // Rounds of twenty racing writers, until one lost a race: on a loaded machine one replica
    // can take all its turns before the other begins (the retries are counted either way,
    // the replica sharing this process's metrics).
    for round in 0..4 {
        let racing = (0..20).map(|n| {
            let instance = if n % 2 == 0 { &app } else { &replica };
            instance.put(
                "/api/v1/update/ai-model-config",
                &token,
                json!({"models": seed_000_models_keeping_keys(), "system_prompt": format!("prompt {n} in round {round}")}),
            )
        });
        for response in futures::future::join_all(racing).await {
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        }
        let retried = app
            .counted("aimc_command_retries_total", "aggregate=\"AiModelConfig\"")
            .await;
        if retried >= 1.0 {
            break;
        }
    }
    let minutes_ago = chrono::Utc::now() - chrono::Duration::seconds(120);
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('AiModelConfig', $1, 1, 'NoSuchEvent', '1.0', '{\"NoSuchEvent\": {}}', $2)",
    )
    .bind(app.aggregate_id("ghost"))
    .bind(json!({"occurred_at": minutes_ago.to_rfc3339()}))
    .execute(&app.pool)
    .await
    .unwrap();

    // When Prometheus scrapes, once the periodic catch-up has met that event.
    let mut scrape = None;
    for _ in 0..50 {
        let metrics = app.request(Method::GET, "/metrics", None, None).await;
        assert_eq!(metrics.status, StatusCode::OK);
        let parsed = exposition::parse(&metrics.text).unwrap_or_else(|error| panic!("{error}"));
        let lagging = parsed
            .find(
                "aimc_projection_lag_events",
                &[("projection", "config_view")],
            )
            .iter()
            .any(|sample| sample.value >= 1.0);
        if lagging {
            scrape = Some(parsed);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let scrape = scrape.expect("the projection lag never showed the unreadable event");

    // Then every request counts under its route template, never its raw path.
    let spec: serde_json::Value = serde_json::from_str(&aimc_api::openapi_json()).unwrap();
    let mut known: HashSet<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    known.extend(["/metrics", "/openapi.json", "/docs", "other"]);
    for sample in scrape.find("aimc_http_requests_total", &[]) {
        assert!(
            known.contains(sample.labels["route"].as_str()),
            "{sample:?}"
        );
    }
    let counted = |route: &str, method: &str, status: &str| {
        scrape.value(
            "aimc_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(counted("/ai/llm/{id}", "PUT", "200"), 1.0);
    assert_eq!(counted("/ai/llm/{id}", "DELETE", "200"), 1.0);
    assert_eq!(counted("/ai/llm", "POST", "200"), 1.0);
    assert_eq!(counted("other", "GET", "404"), 1.0);
    assert!(counted("/api/v1/update/ai-model-config", "PUT", "200") >= 10.0);
    assert_well_formed_histograms(&scrape, "aimc_http_request_duration_seconds");

    // And Vault's latency by operation.
    assert_eq!(
        scrape.types["aimc_vault_request_duration_seconds"],
        "histogram"
    );
    assert_well_formed_histograms(&scrape, "aimc_vault_request_duration_seconds");
    for operation in ["encrypt", "decrypt"] {
        let calls = scrape.value(
            "aimc_vault_request_duration_seconds_count",
            &[("operation", operation), ("outcome", "ok")],
        );
        assert!(calls >= 1.0, "{operation}: {calls}");
    }

    // And the pool's connections.
    let size = scrape.value("aimc_db_pool_size", &[]);
    let idle = scrape.value("aimc_db_pool_connections", &[("state", "idle")]);
    let in_use = scrape.value("aimc_db_pool_connections", &[("state", "in_use")]);
    assert_eq!(scrape.value("aimc_db_pool_max_size", &[]), 10.0);
    assert!((1.0..=10.0).contains(&size), "{size}");
    assert_eq!(idle + in_use, size);
    assert_eq!(scrape.types["aimc_db_pool_connections"], "gauge");

    // And the races the writers lost, each retried.
    for aggregate in ["AiModelConfig", "Credential"] {
        let conflicts = scrape.value("aimc_command_conflicts_total", &[("aggregate", aggregate)]);
        let retries = scrape.value("aimc_command_retries_total", &[("aggregate", aggregate)]);
        assert!(conflicts >= retries, "{aggregate}: {conflicts} < {retries}");
    }
    assert!(
        scrape.value(
            "aimc_command_retries_total",
            &[("aggregate", "AiModelConfig")]
        ) >= 1.0,
        "the writers never collided, so this proved nothing about retries"
    );

    // And how far each view is behind: the unreadable event, appended two minutes ago.
    for view in ["audit_log", "config_view", "credential_view"] {
        assert_eq!(
            scrape.value("aimc_projection_lag_events", &[("projection", view)]),
            1.0,
            "{view}"
        );
        let seconds = scrape.value("aimc_projection_lag_seconds", &[("projection", view)]);
        assert!((120.0..3600.0).contains(&seconds), "{view}: {seconds}");
    }
    app.assert_no_plain_key_anywhere().await;
}
