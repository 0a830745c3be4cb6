//! Procedural macros of `databot-sdk`: the plugin manifest embedded in the component.
//!
//! `manifest!` writes a JSON document into the `databot-manifest` custom section of the
//! compiled module. The host reads it without running the plugin (`databot plugin inspect`)
//! and refuses components whose manifest is missing, malformed or of another contract major.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token, bracketed};

/// The contract version written into manifests; kept equal to `databot_sdk::CONTRACT_VERSION`.
const CONTRACT_VERSION: &str = "0.1.1";
const KINDS: [&str; 4] = ["tool", "connector", "provider", "channel"];
const CAPABILITIES: [&str; 13] = [
    "logging",
    "verify",
    "caller",
    "config",
    "state",
    "connectors",
    "sql",
    "kafka",
    "vectors",
    "http",
    "filesystem",
    "stream-sink",
    "shell",
];

struct ManifestInput {
    name: LitStr,
    kind: LitStr,
    description: LitStr,
    version: Option<LitStr>,
    capabilities: Vec<LitStr>,
}

impl Parse for ManifestInput {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut name = None;
        let mut kind = None;
        let mut description = None;
        let mut version = None;
        let mut capabilities = Vec::new();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            match key.to_string().as_str() {
                "name" => name = Some(input.parse::<LitStr>()?),
                "kind" => kind = Some(input.parse::<LitStr>()?),
                "description" => description = Some(input.parse::<LitStr>()?),
                "version" => version = Some(input.parse::<LitStr>()?),
                "capabilities" => {
                    let content;
                    bracketed!(content in input);
                    let list: Punctuated<LitStr, Token![,]> =
                        content.parse_terminated(|p| p.parse::<LitStr>(), Token![,])?;
                    capabilities = list.into_iter().collect();
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown manifest key `{other}`; expected name, kind, description, version or capabilities"
                        ),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let span = input.span();
        let missing = |what: &str| syn::Error::new(span, format!("manifest needs `{what}`"));
        Ok(Self {
            name: name.ok_or_else(|| missing("name"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            description: description.ok_or_else(|| missing("description"))?,
            version,
            capabilities,
        })
    }
}

/// Embed the plugin manifest.
///
/// ```ignore
/// databot_sdk::manifest! {
///     name: "web_fetch",
///     kind: "tool",
///     description: "Fetch web pages as text.",
///     capabilities: ["http"],
/// }
/// ```
/// `version` defaults to the crate's `CARGO_PKG_VERSION`.
#[proc_macro]
pub fn manifest(input: TokenStream) -> TokenStream {
    let parsed = syn::parse_macro_input!(input as ManifestInput);
    match expand(parsed) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(input: ManifestInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = input.name.value();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err(syn::Error::new(
            input.name.span(),
            "plugin name must be non-empty lowercase ASCII letters, digits, `_` or `-`",
        ));
    }
    let kind = input.kind.value();
    if !KINDS.contains(&kind.as_str()) {
        return Err(syn::Error::new(
            input.kind.span(),
            format!("kind must be one of {KINDS:?}"),
        ));
    }
    for capability in &input.capabilities {
        if !CAPABILITIES.contains(&capability.value().as_str()) {
            return Err(syn::Error::new(
                capability.span(),
                format!("unknown capability; expected one of {CAPABILITIES:?}"),
            ));
        }
    }
    let version = match input.version {
        Some(version) => version.value(),
        None => std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".to_owned()),
    };
    let document = serde_json::json!({
        "name": name,
        "version": version,
        "kind": kind,
        "contract": CONTRACT_VERSION,
        "description": input.description.value(),
        "capabilities": input.capabilities.iter().map(LitStr::value).collect::<Vec<_>>(),
    });
    let bytes = document.to_string().into_bytes();
    let len = bytes.len();
    let literal = syn::LitByteStr::new(&bytes, proc_macro2::Span::call_site());
    Ok(quote! {
        #[used]
        #[unsafe(link_section = "databot-manifest")]
        static __DATABOT_MANIFEST: [u8; #len] = *#literal;
    })
}
