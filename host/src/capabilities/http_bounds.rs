//! Bounds on what a plugin can make one outgoing request carry before any header or body: the
//! method, the authority and the path. wasi-http checks only their syntax, and an extension
//! method or an authority has no length limit in the `http` crate, so an unsent request could
//! hold any amount of host memory in one resource-table slot. These setters replace wasi-http's
//! own on the linker: a value over its bound is refused to the guest the way a malformed one is
//! (the setter's `error` result); within it, wasi-http's setter runs unchanged. With the bounds,
//! a request stays within the 64 KiB its slot is charged (`host_memory`).

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::{HostOutgoingRequest as _, Method};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

use super::StoreState;

/// The wasi:http types interface as wasi-http 48 defines it on the linker (guests importing
/// an earlier 0.2 version are linked to it by semver).
/// After a wasmtime upgrade this must name the version wasi registers: the hostile fixture's
/// tests of these bounds fail if it does not.
const TYPES: &str = "wasi:http/types@0.2.12";
/// Longest extension method (standard methods are at most 7 bytes).
pub const MAX_METHOD_BYTES: usize = 32;
/// Longest authority (`host:port`; DNS names are at most 253 bytes).
pub const MAX_AUTHORITY_BYTES: usize = 1024;
/// Longest path with query.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

type SetterResult = wasmtime::Result<(Result<(), ()>,)>;

/// Replace the request setters on `linker` (after wasi-http was added to it).
pub fn bound_request_setters(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap(
        "[method]outgoing-request.set-method",
        |mut store: StoreContextMut<'_, StoreState>,
         (request, method): (Resource<HostOutgoingRequest>, Method)|
         -> SetterResult {
            if matches!(&method, Method::Other(name) if name.len() > MAX_METHOD_BYTES) {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_method(request, method)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-authority",
        |mut store: StoreContextMut<'_, StoreState>,
         (request, authority): (Resource<HostOutgoingRequest>, Option<String>)|
         -> SetterResult {
            if authority
                .as_ref()
                .is_some_and(|a| a.len() > MAX_AUTHORITY_BYTES)
            {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_authority(request, authority)?,))
        },
    )?;
    types.func_wrap(
        "[method]outgoing-request.set-path-with-query",
        |mut store: StoreContextMut<'_, StoreState>,
         (request, path): (Resource<HostOutgoingRequest>, Option<String>)|
         -> SetterResult {
            if path.as_ref().is_some_and(|p| p.len() > MAX_PATH_BYTES) {
                return Ok((Err(()),));
            }
            Ok((store.data_mut().http().set_path_with_query(request, path)?,))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
