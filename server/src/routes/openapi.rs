//! `GET /api/v1/openapi.json`: the OpenAPI 3.0 description of `/api/v1`.
//!
//! Generated from the operation table ([`super::operations`]): each route's request and
//! response schemas come from the very types its handler takes and returns (`schemars`
//! derives, following their serde attributes), its required role from the same row's
//! policy. Schemathesis checks real responses against it.

use super::operations::{operations, Reply};
use app::domain::access::Need;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// The schema generators of one description.
pub struct Schemas {
    /// Responses: how types serialise, named in `components/schemas`.
    out: SchemaGenerator,
    /// Requests: how types deserialise, inlined.
    input: SchemaGenerator,
}

impl Schemas {
    pub fn out<T: JsonSchema>(&mut self) -> Value {
        let schema = self.out.subschema_for::<T>();
        openapi3(&mut self.out, schema)
    }
    pub fn input<T: JsonSchema>(&mut self) -> Value {
        let schema = self.input.subschema_for::<T>();
        openapi3(&mut self.input, schema)
    }
}

/// A subschema in OpenAPI 3.0's dialect: the generator's transforms (`const` → `enum`,
/// `nullable`, …) apply to the definitions it collects, not to what `subschema_for`
/// returns, so they are applied here too.
fn openapi3(generator: &mut SchemaGenerator, mut schema: schemars::Schema) -> Value {
    for t in generator.transforms_mut() {
        t.transform(&mut schema);
    }
    schema.to_value()
}

/// Query parameters from an object schema's properties (all optional).
fn parameters(query: Option<&Value>, path: &str) -> Vec<Value> {
    let mut out: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": if name == "position" { json!({"type": "integer", "minimum": 0}) } else { json!({"type": "string"}) }})
        })
        .collect();
    if let Some(props) = query
        .and_then(|q| q.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            let mut schema = schema.clone();
            // A query parameter is absent rather than null.
            if let Some(o) = schema.as_object_mut() {
                o.remove("nullable");
            }
            out.push(json!({"name": name, "in": "query", "required": false, "schema": schema}));
        }
    }
    out
}

/// The whole document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut s = Schemas {
            out: SchemaSettings::openapi3().for_serialize().into_generator(),
            input: SchemaSettings::openapi3()
                .for_deserialize()
                .with(|s| s.inline_subschemas = true)
                .into_generator(),
        };
        let error = json!({"$ref": "#/components/schemas/Error"});
        let mut paths = Map::new();
        for o in operations() {
            let Some(r) = &o.rest else { continue };
            let mut responses = Map::new();
            let content = match r.reply {
                Reply::Json(schema) => Some(json!({"application/json": {"schema": schema(&mut s)}})),
                Reply::Empty => None,
                Reply::Text(media) => Some(json!({media: {"schema": {"type": "string"}}})),
            };
            let mut ok = json!({"description": "success"});
            if let Some(c) = content {
                ok["content"] = c;
            }
            responses.insert(r.status.to_string(), ok);
            // Every refusal and failure is JSON `{error}`; a malformed path segment or
            // query is rejected by the framework with a plain-text reason.
            responses.insert(
                "default".into(),
                json!({"description": "an error: 400 bad input, 401 not signed in, 403 role too low or cross-site, 404, 409 conflict, 413 too large, 429 rate-limited, 5xx",
                       "content": {"application/json": {"schema": error}, "text/plain": {"schema": {"type": "string"}}}}),
            );
            let query = r.query.map(|q| q(&mut s));
            let mut operation = json!({
                "summary": o.summary,
                "operationId": o.name,
                "parameters": parameters(query.as_ref(), r.path),
                "responses": responses,
            });
            match o.policy.need {
                Need::Public => operation["security"] = json!([]),
                Need::Role(role) => {
                    operation["x-required-role"] = json!(role.as_str());
                    if o.policy.calls_agent {
                        operation["x-rate-limited"] = json!(true);
                    }
                }
            }
            if let Some(body) = r.body {
                operation["requestBody"] = json!({"required": !r.body_optional, "content": {"application/json": {"schema": body(&mut s)}}});
            }
            paths
                .entry(r.path)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("path item")
                .insert(r.method.to_lowercase(), operation);
        }
        let mut schemas = s.out.take_definitions(true);
        schemas.insert(
            "Error".into(),
            json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}),
        );
        json!({
            "openapi": "3.0.3",
            "info": {
                "title": "Opsight API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "KPI insight for distribution-centre operations. Every operation needs an API token (`Authorization: Bearer …`) or a session with at least the role in `x-required-role`; those marked `x-rate-limited` call an agent and count against the caller's and the server's per-minute allowance (429 with Retry-After beyond it).",
            },
            "servers": [{"url": "/api/v1"}],
            "security": [{"bearer": []}, {"session": []}],
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "an API token, `opsight_…`"},
                    "session": {"type": "apiKey", "in": "cookie", "name": app::ssr::access::SESSION_COOKIE},
                },
            },
        })
    })
}
