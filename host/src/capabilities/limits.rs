//! The store's resource limiter: linear memory grows only while it and what the host holds
//! for the call (`host_memory`) fit the call's memory budget. A refused growth traps with the
//! reason and is recorded, so the runtime reports the budget instead of a bare trap.

use wasmtime::ResourceLimiter;

use super::StoreState;

/// Wasm table elements one instance may have (function tables, not host objects).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if self.memory.memory_growing(current, desired) {
            return Ok(true);
        }
        // Trap instead of returning -1: guests abort on allocation failure anyway, and a trap
        // here carries the reason.
        Err(wasmtime::Error::msg(format!(
            "memory budget exceeded: growing to {desired} bytes, the cap is {} bytes",
            self.memory.budget()
        )))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
