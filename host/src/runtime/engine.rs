//! The shared wasmtime engine: component model, async, epoch interruption, pooling allocator
//! (with a fallback to on-demand allocation where the address space is too small), and the
//! epoch ticker that turns call deadlines into traps.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::MAX_MEMORY_MB;

/// Epoch tick period; a deadline overshoots by at most one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Memory kept resident per pooled linear memory between instances.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Instances that may be alive at once across all plugins (pool slots).
const POOL_INSTANCES: u32 = 1000;

fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(1024 * 1024)
        .parallel_compilation(true);
    config
}

fn pooling() -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 2)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 2)
        .max_memory_size(usize::try_from(MAX_MEMORY_MB * 1024 * 1024).unwrap_or(usize::MAX))
        .max_core_instances_per_component(50)
        .max_memories_per_component(10)
        .max_tables_per_component(20)
        // Reset reused slots with memset over the pages that were touched (found with
        // PAGEMAP_SCAN on Linux 6.7+) instead of madvise: the next instance of the same
        // plugin takes no page faults for them.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(64 * 1024);
    pool
}

/// Build the engine. Tries the pooling allocator first and falls back to on-demand
/// allocation with a warning (small virtual address spaces cannot hold the pool).
pub fn build_engine() -> anyhow::Result<Engine> {
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!("pooling allocator unavailable ({error:#}); using on-demand allocation");
            Ok(Engine::new(&base_config())?)
        }
    }
}

/// Ticks the engine's epoch until dropped.
pub struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("databot-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!("cannot start the epoch thread: {error}; deadlines will not fire");
        }
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A stable identity of the engine's code generation settings, for the compile cache.
pub fn engine_fingerprint(engine: &Engine) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
