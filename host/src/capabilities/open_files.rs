//! Open files one call may hold: `budgets.max_open_files` descriptors opened in its granted
//! folders (its preopened folders come on top). Each open file holds an OS file descriptor
//! until it is dropped or the call ends, and the table charge (`host_memory`) alone would let a
//! call hold a thousand; a call at its limit is refused the next open with the `quota` error
//! code, and the call ends with the limit, naming the key.
//!
//! wasi's `open-at` is replaced on the linker with one that counts the call's open
//! descriptors first, then runs wasi's own.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};

use super::{BudgetBreach, StoreState};

/// The wasi:filesystem types interface as wasmtime-wasi 48 defines it on the linker.
const TYPES: &str = "wasi:filesystem/types@0.2.12";

type OpenResult = wasmtime::Result<(Result<Resource<Descriptor>, ErrorCode>,)>;

/// Replace `open-at` on `linker` (after wasi was added to it).
pub fn bound_open_files(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, StoreState>,
         (folder, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let state = store.data_mut();
                if let Some(breach) = state.open_files_refused() {
                    state.record_breach(breach);
                    return Ok((Err(ErrorCode::Quota),));
                }
                let opened = state
                    .filesystem()
                    .open_at(folder, path_flags, path, open_flags, flags)
                    .await;
                match opened {
                    Ok(descriptor) => Ok((Ok(descriptor),)),
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            }) as Box<dyn Future<Output = OpenResult> + Send + '_>
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl StoreState {
    /// The breach if the call holds as many open descriptors as it may.
    fn open_files_refused(&mut self) -> Option<BudgetBreach> {
        let allowed = self.max_open_files + self.grants.preopens.len();
        let open = self
            .table
            .iter_mut()
            .filter(|entry| entry.downcast_ref::<Descriptor>().is_some())
            .count();
        (open >= allowed).then(|| {
            let plugin = &self.grants.plugin;
            BudgetBreach::OpenFiles(format!(
                "plugin `{plugin}` had {} files open, its limit (plugins.{plugin}.budgets.max_open_files)",
                open - self.grants.preopens.len().min(open)
            ))
        })
    }
}
