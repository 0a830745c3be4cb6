//! The MCP `ServerHandler` over the plugin runtime: tools come from the loaded plugins (so the
//! list changes at run time), resources describe connectors and the host's health. A failing
//! tool is an MCP tool error (`isError: true`), never a protocol error.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use serde_json::{Value, json};
use tracing::Instrument;

use super::notify::PeerRegistry;
use crate::runtime::{HEALTH_TTL, Runtime};

/// URI of the resource with every connector's health and every plugin's status.
pub const HEALTH_URI: &str = "databot://health";
/// Prefix of the per-connector resources (`connector://NAME`).
pub const CONNECTOR_SCHEME: &str = "connector://";

const JSON_MIME: &str = "application/json";

/// One MCP server session over the runtime. Cheap to clone; every session of a server shares
/// the runtime and the peer registry.
#[derive(Clone)]
pub struct DatabotMcp {
    runtime: Runtime,
    peers: Arc<PeerRegistry>,
}

impl DatabotMcp {
    pub fn new(runtime: Runtime, peers: Arc<PeerRegistry>) -> Self {
        Self { runtime, peers }
    }

    /// The tools as MCP describes them.
    pub fn tool_list(&self) -> Vec<Tool> {
        self.runtime
            .tools()
            .into_iter()
            .map(|tool| {
                let schema = match tool.input_schema {
                    Value::Object(schema) => schema,
                    _ => object_schema(),
                };
                Tool::new(tool.name, tool.description, Arc::new(schema))
            })
            .collect()
    }

    /// Call a tool: the result as text (and as structured content when it is a JSON object),
    /// or a tool error with a readable message.
    pub async fn call(&self, name: &str, arguments: Option<JsonObject>) -> CallToolResult {
        let arguments = Value::Object(arguments.unwrap_or_default());
        let result = match self.runtime.resolve_tool(name) {
            Some(resolved) => {
                self.runtime
                    .call_resolved(&resolved, name, &arguments)
                    .await
            }
            None => Err(self.runtime.unavailable_tool(name)),
        };
        match result {
            Ok(text) => {
                let structured = serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_object);
                let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
                result.structured_content = structured;
                result
            }
            Err(error) => {
                tracing::debug!(tool = name, kind = %error.kind, "MCP tool call failed: {}", error.message);
                CallToolResult::error(vec![ContentBlock::text(format!(
                    "tool `{name}` failed ({error})"
                ))])
            }
        }
    }

    /// Every resource: the health overview, then one per loaded connector.
    pub fn resource_list(&self) -> Vec<Resource> {
        let mut resources = vec![
            Resource::new(HEALTH_URI, "health")
                .with_description("Health of every connector and status of every plugin")
                .with_mime_type(JSON_MIME),
        ];
        resources.extend(
            self.runtime
                .status()
                .into_iter()
                .filter(|s| s.kind.as_deref() == Some("connector") && s.digest.is_some())
                .map(|s| {
                    Resource::new(format!("{CONNECTOR_SCHEME}{}", s.name), s.name.clone())
                        .with_description(format!(
                            "Connector `{}`; operations: {}",
                            s.name,
                            s.operations.join(", ")
                        ))
                        .with_mime_type(JSON_MIME)
                }),
        );
        resources
    }

    /// The JSON of one resource, or `None` when there is no such resource.
    pub async fn resource_json(&self, uri: &str) -> Option<Value> {
        if uri == HEALTH_URI {
            let connectors = self.runtime.connectors_health(HEALTH_TTL).await;
            let plugins: Vec<Value> = self
                .runtime
                .status()
                .into_iter()
                .map(|s| {
                    json!({
                        "name": s.name,
                        "kind": s.kind,
                        "version": s.version,
                        "state": s.state,
                        "breaker": s.breaker,
                        "operations": s.operations,
                        "calls": s.calls,
                        "failures": s.failures,
                        "last_error": s.last_error,
                    })
                })
                .collect();
            return Some(json!({ "connectors": connectors, "plugins": plugins }));
        }
        let name = uri.strip_prefix(CONNECTOR_SCHEME)?;
        let is_connector = self.runtime.status().iter().any(|s| {
            s.name == name && s.kind.as_deref() == Some("connector") && s.digest.is_some()
        });
        if !is_connector {
            return None;
        }
        let health = self
            .runtime
            .connectors_health(HEALTH_TTL)
            .await
            .into_iter()
            .find(|h| h.name == name)?;
        Some(json!({
            "name": health.name,
            "status": health.status,
            "message": health.message,
            "operations": health.operations,
        }))
    }
}

fn object_schema() -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".into(), Value::from("object"));
    schema
}

/// The trace-context value `key` from a request's `_meta`.
fn meta_value(meta: &JsonObject, key: &str) -> Option<String> {
    meta.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl rmcp::ServerHandler for DatabotMcp {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("databot", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "databot's sandboxed tools. Connector health: read `databot://health` or `connector://NAME`.",
            )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tracing::debug!("MCP client initialized");
        self.peers.add(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::info_span!("mcp.tools/call", tool = %request.name);
        // rmcp moves the request's `_meta` into the context; look in both, then in the HTTP
        // headers of the request over Streamable HTTP (where instrumented clients put it).
        let request_meta = request.meta.as_ref().map(|m| &m.0.0);
        let http_headers = context
            .extensions
            .get::<http::request::Parts>()
            .map(|parts| &parts.headers);
        crate::telemetry::propagation::set_remote_parent(&span, |key| {
            meta_value(&context.meta.0.0, key)
                .or_else(|| request_meta.and_then(|m| meta_value(m, key)))
                .or_else(|| {
                    http_headers
                        .and_then(|headers| headers.get(key))
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned)
                })
        });
        let result = self
            .call(&request.name, request.arguments)
            .instrument(span)
            .await;
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.resource_list()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match self.resource_json(&request.uri).await {
            Some(value) => {
                let text = serde_json::to_string_pretty(&value)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                let contents = ResourceContents::text(text, request.uri).with_mime_type(JSON_MIME);
                Ok(ReadResourceResult::new(vec![contents]).into())
            }
            None => Err(ErrorData::resource_not_found(
                format!(
                    "no resource `{}`: try `{HEALTH_URI}` or `{CONNECTOR_SCHEME}NAME` for a loaded connector",
                    request.uri
                ),
                Some(json!({ "uri": request.uri })),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_read_from_string_meta_values_only() {
        let mut meta = JsonObject::new();
        meta.insert(
            "traceparent".into(),
            json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        );
        meta.insert("tracestate".into(), json!(7));
        assert_eq!(
            meta_value(&meta, "traceparent").as_deref(),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(meta_value(&meta, "tracestate"), None);
        assert_eq!(meta_value(&meta, "baggage"), None);
    }
}
