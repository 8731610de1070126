//! Events as older builds stored them, brought to today's shape as they are read. The log is
//! never rewritten: each event keeps the version it was written with (`events.event_version`),
//! and every path that reads events decodes them here, so a payload whose shape changed loads
//! into today's types however old it is.
//!
//! An upcaster is cqrs-es' [`SemanticVersionEventUpcaster`]: it applies to an event type stored
//! under a version below its own, and they apply in order, so a chain of changes composes.

use std::sync::LazyLock;

use cqrs_es::persist::{EventUpcaster, SemanticVersionEventUpcaster, SerializedEvent};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Every change of an event's shape, oldest first.
static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(|| {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "CredentialValidated",
        "2.0",
        Box::new(validated_with_verdict),
    ))]
});

/// Decodes an event stored as `event_type` at `event_version`.
pub(crate) fn decode<E: DeserializeOwned>(
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<E, serde_json::Error> {
    if !UPCASTERS
        .iter()
        .any(|upcaster| upcaster.can_upcast(event_type, event_version))
    {
        // Today's shape: straight from the text, as most events are.
        return serde_json::from_str(payload);
    }
    let stored = SerializedEvent {
        aggregate_id: String::new(),
        sequence: 0,
        aggregate_type: String::new(),
        event_type: event_type.to_owned(),
        event_version: event_version.to_owned(),
        payload: serde_json::from_str(payload)?,
        metadata: Value::Null,
    };
    let upcast = UPCASTERS.iter().fold(stored, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    });
    serde_json::from_value(upcast.payload)
}

/// 1.0 → 2.0: a test's outcome was `ok` plus the provider's status, from which every reader
/// had to work out whether the provider refused the key (401 or 403) or could not tell; 2.0
/// records that `verdict` itself.
fn validated_with_verdict(mut payload: Value) -> Value {
    if let Some(fields) = payload
        .get_mut("CredentialValidated")
        .and_then(Value::as_object_mut)
    {
        let ok = fields
            .remove("ok")
            .and_then(|ok| ok.as_bool())
            .unwrap_or(false);
        let status = fields.get("status").and_then(Value::as_u64);
        let verdict = match (ok, status) {
            (true, _) => "valid",
            (false, Some(401 | 403)) => "refused",
            (false, _) => "inconclusive",
        };
        fields.insert("verdict".into(), json!(verdict));
    }
    payload
}

#[cfg(test)]
mod tests {
    use aimc_domain::{CredentialEvent, TestVerdict};

    use super::*;

    /// `CredentialValidated` as builds before version 2.0 of the event stored it.
    fn stored_1_0(ok: bool, status: Option<u16>) -> String {
        json!({"CredentialValidated": {
            "credential_id": "0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00",
            "ok": ok,
            "status": status,
            "reason": "the provider answered",
            "checked_at": "2026-11-30T10:00:00Z"
        }})
        .to_string()
    }

    fn verdict_of(payload: &str, version: &str) -> TestVerdict {
        match decode::<CredentialEvent>("CredentialValidated", version, payload).unwrap() {
            CredentialEvent::Validated { verdict, .. } => verdict,
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn a_test_stored_as_ok_and_status_loads_with_its_verdict() {
        assert_eq!(
            verdict_of(&stored_1_0(true, Some(200)), "1.0"),
            TestVerdict::Valid
        );
        assert_eq!(
            verdict_of(&stored_1_0(false, Some(401)), "1.0"),
            TestVerdict::Refused
        );
        assert_eq!(
            verdict_of(&stored_1_0(false, Some(403)), "1.0"),
            TestVerdict::Refused
        );
        assert_eq!(
            verdict_of(&stored_1_0(false, Some(500)), "1.0"),
            TestVerdict::Inconclusive
        );
        assert_eq!(
            verdict_of(&stored_1_0(false, None), "1.0"),
            TestVerdict::Inconclusive
        );
    }

    #[test]
    fn todays_shape_is_read_as_it_is() {
        let today = json!({"CredentialValidated": {
            "credential_id": "0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00",
            "verdict": "refused",
            "status": 401,
            "reason": "the provider refused the key",
            "checked_at": "2026-11-30T10:00:00Z"
        }})
        .to_string();
        assert_eq!(verdict_of(&today, "2.0"), TestVerdict::Refused);
        // Other event types are not touched, whatever their version.
        let removed = json!({"CredentialRemoved": {
            "credential_id": "0193a8f2-7c1e-7d4a-9b2e-5f1c3d2a1b00"
        }})
        .to_string();
        assert!(decode::<CredentialEvent>("CredentialRemoved", "1.0", &removed).is_ok());
    }
}
