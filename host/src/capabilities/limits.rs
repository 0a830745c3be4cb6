//! Per-call memory cap. Records a refused growth so the runtime can report the budget breach
//! instead of a bare trap.

use wasmtime::ResourceLimiter;

pub struct MemoryLimiter {
    max_bytes: usize,
    /// The size a refused `memory.grow` asked for.
    pub(crate) refused_growth: Option<usize>,
    /// The largest size a linear memory was allowed to reach (the call's memory peak).
    pub(crate) peak_bytes: usize,
}

impl MemoryLimiter {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            refused_growth: None,
            peak_bytes: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused_growth = Some(desired);
            // Trap instead of returning -1: guests abort on allocation failure anyway, and a
            // trap here carries the reason.
            return Err(wasmtime::Error::msg(format!(
                "memory budget exceeded: growing to {desired} bytes, the cap is {} bytes",
                self.max_bytes
            )));
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
