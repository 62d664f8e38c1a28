//! The error half of the OpenAPI document, filled in once for every operation instead of in each
//! handler's annotation: every error the server sends is `application/problem+json` (the
//! [`Problem`](super::error::Problem) schema), and the errors any operation of a given shape can
//! answer — a parameter that does not parse, a body too large or of the wrong type, a missing
//! token, a dependency down — are documented wherever that shape occurs.
//!
//! Handlers still document what is particular to them (409 `email_taken`, 429 with its reason);
//! this only adds what is missing and never changes a description a handler wrote. Schemathesis'
//! conformance checks hold the document to the server (tests/api/schemathesis.rs).

use utoipa::{
    Modify,
    openapi::{
        Content, OpenApi, RefOr, ResponseBuilder,
        path::{Operation, ParameterIn},
        schema::Ref,
    },
};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The [`Modify`] that documents error responses (see the module's comment).
pub struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let shared_path_params = item.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path))
            });
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                document_errors(op, shared_path_params);
            }
        }
    }
}

/// What an operation takes, as far as the errors it can answer go.
struct Shape {
    authenticated: bool,
    path_params: bool,
    query_params: bool,
    header_params: bool,
    body: bool,
    json_body: bool,
}

impl Shape {
    fn of(op: &Operation, shared_path_params: bool) -> Shape {
        let params = op.parameters.as_deref().unwrap_or_default();
        let has = |kind: ParameterIn| {
            params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == kind))
        };
        let body = op.request_body.as_ref().and_then(|b| match b {
            RefOr::T(b) => Some(b),
            RefOr::Ref(_) => None,
        });
        Shape {
            // A route open to anyone says `security(())`; one that takes a token says
            // `bearer` (and may also allow `()`: an invalid token is still refused with 401).
            authenticated: op.security.as_ref().is_some_and(|reqs| {
                reqs.iter().any(|r| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_object().map(|o| o.contains_key("bearer")))
                        .unwrap_or(false)
                })
            }),
            path_params: shared_path_params || has(ParameterIn::Path),
            query_params: has(ParameterIn::Query),
            header_params: has(ParameterIn::Header),
            body: body.is_some(),
            json_body: body.is_some_and(|b| b.content.keys().any(|t| t.contains("json"))),
        }
    }
}

fn document_errors(op: &mut Operation, shared_path_params: bool) {
    let shape = Shape::of(op, shared_path_params);
    let responses = &mut op.responses.responses;

    // Errors a handler documented: their body is a problem, whatever the annotation said.
    for (status, response) in responses.iter_mut() {
        let is_error = status == "default" || status.starts_with('4') || status.starts_with('5');
        let RefOr::T(response) = response else {
            continue;
        };
        if !is_error {
            continue;
        }
        let schema = response
            .content
            .shift_remove("application/json")
            .and_then(|c| match c {
                RefOr::T(c) => c.schema,
                RefOr::Ref(_) => None,
            })
            .unwrap_or_else(problem_schema);
        if !response.content.contains_key(PROBLEM_JSON) {
            response
                .content
                .insert(PROBLEM_JSON.into(), RefOr::T(Content::new(Some(schema))));
        }
    }

    let mut add = |status: &str, description: &str| {
        responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(PROBLEM_JSON, Content::new(Some(problem_schema())))
                    .build(),
            )
        });
    };
    add(
        "400",
        if shape.body {
            "bad_request: a parameter that does not parse, a NUL character (U+0000) in any text, \
             or a body that cannot be read; malformed_json: a body that is not the JSON this \
             operation takes"
        } else {
            "bad_request: a parameter that does not parse, or a NUL character (U+0000) in the \
             path or the query"
        },
    );
    if shape.authenticated {
        add(
            "401",
            "unauthorized: no bearer token, or one that is invalid, expired or revoked \
             (with WWW-Authenticate)",
        );
        add(
            "403",
            "forbidden: the caller lacks the role this needs, or does not own the resource",
        );
    }
    if shape.path_params {
        add("404", "not_found: nothing has this id");
    }
    if shape.body {
        add("408", "request_timeout: the body did not arrive in time");
        add(
            "413",
            "payload_too_large: the body (or the Content-Length announcing it) is over this \
             route's limit",
        );
        add(
            "415",
            if shape.json_body {
                "unsupported_media_type: the Content-Type is not JSON, or names another charset \
                 than UTF-8"
            } else {
                "unsupported_media_type: the body is not of a type this operation takes"
            },
        );
    }
    if shape.body || shape.query_params || shape.header_params {
        add(
            "422",
            "validation_failed: a value out of range or of the wrong form (`field` names it)",
        );
    }
    add(
        "503",
        "unavailable: a dependency (database, Redis, storage) cannot be reached; try again later",
    );
}

fn problem_schema() -> RefOr<utoipa::openapi::Schema> {
    RefOr::Ref(Ref::from_schema_name("Problem"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::to_value(crate::http::openapi()).unwrap()
    }

    #[test]
    fn every_error_response_is_a_problem() {
        let doc = doc();
        let mut errors = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op.get("responses").and_then(|r| r.as_object()) else {
                    continue;
                };
                for (status, response) in responses {
                    if !(status.starts_with('4') || status.starts_with('5')) {
                        continue;
                    }
                    errors += 1;
                    let content = response["content"]
                        .as_object()
                        .unwrap_or_else(|| panic!("{method} {path} {status} has no content"));
                    assert_eq!(
                        content.keys().collect::<Vec<_>>(),
                        [PROBLEM_JSON],
                        "{method} {path} {status}"
                    );
                }
            }
        }
        assert!(errors > 300, "only {errors} error responses documented");
    }

    #[test]
    fn shapes_get_their_errors() {
        let doc = doc();
        let op = &doc["paths"]["/api/v1/courses/{id}"]["patch"]["responses"];
        for status in [
            "400", "401", "403", "404", "408", "413", "415", "422", "503",
        ] {
            assert!(
                op.get(status).is_some(),
                "PATCH /courses/{{id}} lacks {status}"
            );
        }
        // Public, no body, no parameters: neither 401 nor 415.
        let jwks = &doc["paths"]["/.well-known/jwks.json"]["get"]["responses"];
        assert!(jwks.get("401").is_none() && jwks.get("415").is_none());
        // A handler's own description stays.
        let login = &doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"];
        assert!(
            login["description"]
                .as_str()
                .unwrap()
                .contains("Retry-After")
        );
    }
}
