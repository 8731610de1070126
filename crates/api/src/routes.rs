//! The route a request matched, as its template (`/ai/llm/{id}`): the one name spans and metrics
//! give a route. Never the raw path: it holds ids, and would make a span name or a series per
//! object.

use std::collections::HashMap;

use poem::Response;
use poem_openapi::OperationId;

pub struct RouteTemplates {
    /// Operation id → the path template the OpenAPI document files it under.
    operations: HashMap<String, String>,
    /// Routes outside the OpenAPI document (the spec itself, Swagger UI, metrics), each with no
    /// path parameter.
    mounts: Vec<&'static str>,
}

impl RouteTemplates {
    /// The templates of `spec` (the OpenAPI document), and `mounts` for what it leaves out.
    pub fn new(spec: &str, mounts: &[&'static str]) -> Self {
        let spec: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut operations = HashMap::new();
        for (template, methods) in spec["paths"].as_object().into_iter().flatten() {
            for operation in methods.as_object().into_iter().flat_map(|m| m.values()) {
                if let Some(id) = operation["operationId"].as_str() {
                    operations.insert(id.to_owned(), template.clone());
                }
            }
        }
        RouteTemplates {
            operations,
            mounts: mounts.to_vec(),
        }
    }

    /// The template of the route that answered, if one did: poem-openapi marks each answer with
    /// its operation id, and poem's router marks every answer with the pattern it matched.
    /// `None` for a path no route serves (a 404) or a method its route lacks (a 405).
    pub fn matched(&self, response: &Response) -> Option<&str> {
        if let Some(OperationId(id)) = response.data::<OperationId>() {
            return self.operations.get(*id).map(String::as_str);
        }
        let pattern = response.data::<poem::PathPattern>()?;
        self.mounts.iter().copied().find(|mount| {
            pattern.0.strip_prefix(mount).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') && !rest.contains([':', '*', '<'])
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered_by(operation: &'static str) -> Response {
        let mut response = Response::default();
        response.set_data(OperationId(operation));
        response
    }

    fn matched_pattern(pattern: &str) -> Response {
        let mut response = Response::default();
        response.set_data(poem::PathPattern(pattern.into()));
        response
    }

    #[test]
    fn an_operation_is_named_by_its_template_and_a_mount_by_itself() {
        let routes = RouteTemplates::new(
            r#"{"paths": {"/ai/llm/{id}": {"put": {"operationId": "updateAiLlm"},
                                          "delete": {"operationId": "deleteAiLlm"}}}}"#,
            &["/metrics", "/docs"],
        );

        assert_eq!(
            routes.matched(&answered_by("updateAiLlm")),
            Some("/ai/llm/{id}")
        );
        assert_eq!(
            routes.matched(&answered_by("deleteAiLlm")),
            Some("/ai/llm/{id}")
        );
        assert_eq!(
            routes.matched(&matched_pattern("/metrics")),
            Some("/metrics")
        );
        assert_eq!(
            routes.matched(&matched_pattern("/docs/oauth-receiver.html")),
            Some("/docs")
        );
        assert_eq!(routes.matched(&matched_pattern("/metricsx")), None);
        assert_eq!(routes.matched(&matched_pattern("/")), None);
        assert_eq!(routes.matched(&Response::default()), None);
    }
}
