//! Open files one call may hold: `budgets.max_open_files` files and folders opened in its
//! granted folders (the preopened folders themselves aside). Each holds an OS file descriptor
//! until the last handle on it goes, and the table charge (`host_memory`) alone would let a
//! call hold a thousand; a call at its limit is refused the next open with the `quota` error
//! code, and the call ends with the limit, naming the key.
//!
//! wasi's `open-at` is replaced on the linker with one that checks the call's open files
//! first, then runs wasi's own and keeps a weak reference to the OS file it opened. A file
//! counts while anything holds it: its descriptor, or a stream read from it after the
//! descriptor was dropped (wasi's streams share the descriptor's file).

use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, HostDescriptor as _, OpenFlags, PathFlags,
};

use super::{BudgetBreach, StoreState};

/// The wasi:filesystem types interface as wasmtime-wasi 48 defines it on the linker.
/// After a wasmtime upgrade this must name the version wasi registers: the hostile fixture's
/// tests of these bounds fail if it does not.
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
                    Ok(descriptor) => {
                        let file = match state.table.get(&descriptor)? {
                            Descriptor::File(file) => Arc::downgrade(&file.file),
                            Descriptor::Dir(dir) => Arc::downgrade(&dir.dir),
                        };
                        state.opened_files.push(file);
                        Ok((Ok(descriptor),))
                    }
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            }) as Box<dyn Future<Output = OpenResult> + Send + '_>
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

impl StoreState {
    /// The breach if the call holds as many open files as it may (files it no longer holds
    /// are forgotten first).
    fn open_files_refused(&mut self) -> Option<BudgetBreach> {
        self.opened_files.retain(|file| file.strong_count() > 0);
        let open = self.opened_files.len();
        (open >= self.max_open_files).then(|| {
            let plugin = &self.grants.plugin;
            BudgetBreach::OpenFiles(format!(
                "plugin `{plugin}` had {open} files open, its limit (plugins.{plugin}.budgets.max_open_files)"
            ))
        })
    }
}
