//! What one call makes the host hold, charged to the call's memory budget (`memory_mb`) next
//! to its own linear memory.
//!
//! The host keeps a call's objects in the store's resource table (HTTP requests, outgoing
//! bodies, header maps, streams, pollables, responses) and opens connections for it. Each
//! table slot is charged `HOST_OBJECT_BYTES`, the most one object can hold under the bounds
//! `StoreState::new` sets (a header map at most `MAX_HEADER_BYTES` of content, an outgoing
//! body two chunks); each open outgoing connection is charged `CONNECTION_BYTES` (its read
//! buffer, TLS state and the body chunk in flight); what the host holds for the call's whole
//! life (a provider's stream queue) is charged from the start. What this guarantees, at every
//! moment:
//!
//! `linear memory + held + table slots × HOST_OBJECT_BYTES + open connections × CONNECTION_BYTES ≤ memory_mb`
//!
//! The table's capacity enforces it for objects. A slot once used stays usable (the table
//! reuses freed slots without asking), so slots are charged as granted, never given back
//! during the call. They are granted in steps, ahead of the host calls that could need them:
//! every host call passes through `before_host_call`, which knows a lower bound on the free
//! slots (one host call creates at most `OBJECTS_PER_HOST_CALL` objects), counts the live
//! objects only when that bound runs low, and grants the next step when the budget can pay for
//! it. When it cannot, the table stays full and the object the plugin asks for next fails the
//! call as over its memory budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::ResourceTable;

/// What one table slot is charged: the largest object the bounds allow, rounded up.
pub const HOST_OBJECT_BYTES: usize = 64 * 1024;
/// What one open outgoing connection is charged: a 64 KiB read buffer, TLS buffers and
/// state, the response head and a body chunk in flight.
pub const CONNECTION_BYTES: usize = 256 * 1024;
/// The most table slots a call may have, whatever its budget.
pub const MAX_HOST_OBJECTS: usize = 2048;
/// Slots granted when a call starts (fewer for budgets under 8 MiB: an eighth of the budget).
const FIRST_SLOTS: usize = 16;
/// The most objects one host call creates (a response and its body stream, say), with room;
/// listing the preopened folders creates one per folder, counted on top.
const OBJECTS_PER_HOST_CALL: usize = 4;

/// The memory one call may use and what it has used, in bytes.
#[derive(Debug)]
pub struct CallMemory {
    budget: usize,
    /// Linear memory in use (all of the instance's memories).
    linear: usize,
    /// The largest `linear` the call reached.
    pub(crate) linear_peak: usize,
    /// Table slots granted (the table's capacity): charged whether used or not.
    slots: usize,
    /// Host memory held for the whole call (`hold`).
    held: usize,
    /// Host calls left before the live objects must be counted again.
    calls_before_count: usize,
    /// The most objects one host call may create.
    per_host_call: usize,
    /// Connections open now; shared with the egress policy, which opens and closes them.
    connections: Arc<OpenConnections>,
    /// Set when a step of slots was refused (by the budget, or at `MAX_HOST_OBJECTS`): a
    /// table-full trap after it is this budget's.
    pub(crate) objects_refused: Option<Refusal>,
    /// Set when `memory.grow` was refused: the size asked for.
    pub(crate) refused_growth: Option<usize>,
}

/// What the host held when it refused more, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub linear: usize,
    pub objects: usize,
    pub connections: usize,
    pub held: usize,
}

impl Refusal {
    /// The host-held part in bytes (objects and connections at their charge).
    pub fn host_bytes(&self) -> usize {
        self.held + self.objects * HOST_OBJECT_BYTES + self.connections * CONNECTION_BYTES
    }
}

impl CallMemory {
    /// A call with `budget` bytes and `preopens` preopened folders; grants the first slots on
    /// `table` and charges them.
    pub fn new(
        budget: usize,
        preopens: usize,
        connections: Arc<OpenConnections>,
        table: &mut ResourceTable,
    ) -> Self {
        let slots = (budget / 8 / HOST_OBJECT_BYTES).clamp(1, FIRST_SLOTS);
        table.set_max_capacity(slots);
        let per_host_call = OBJECTS_PER_HOST_CALL + preopens;
        let memory = Self {
            budget,
            linear: 0,
            linear_peak: 0,
            slots,
            held: 0,
            // Counted on the first host call.
            calls_before_count: 0,
            per_host_call,
            connections,
            objects_refused: None,
            refused_growth: None,
        };
        memory.publish();
        memory
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    fn open_connections(&self) -> usize {
        self.connections.open.load(Ordering::Acquire)
    }

    /// Bytes charged besides `linear`.
    fn host_bytes(&self) -> usize {
        self.held + self.slots * HOST_OBJECT_BYTES + self.open_connections() * CONNECTION_BYTES
    }

    /// Charge `bytes` the host holds for the whole call (set before the instance starts).
    pub fn hold(&mut self, bytes: usize) {
        self.held += bytes;
        self.publish();
    }

    /// Publish what the egress policy needs to charge a new connection.
    fn publish(&self) {
        self.connections.reserved.store(
            self.linear + self.held + self.slots * HOST_OBJECT_BYTES,
            Ordering::Release,
        );
    }

    /// A linear memory grows from `current` to `desired` bytes: allowed when the whole charge
    /// still fits the budget.
    pub fn memory_growing(&mut self, current: usize, desired: usize) -> bool {
        let linear = self.linear - current.min(self.linear) + desired;
        if linear.saturating_add(self.host_bytes()) > self.budget {
            self.refused_growth = Some(desired);
            return false;
        }
        self.linear = linear;
        self.linear_peak = self.linear_peak.max(linear);
        self.publish();
        true
    }

    /// Run before every host call of the plugin: grant the next step of table slots if the
    /// free ones may run low.
    pub fn before_host_call(&mut self, table: &mut ResourceTable) {
        if self.calls_before_count > 0 {
            self.calls_before_count -= 1;
            return;
        }
        let live = table.iter_mut().count();
        let mut free = self.slots.saturating_sub(live);
        let low_water = self.low_water();
        if free < low_water {
            let wanted = (self.slots * 2).clamp(FIRST_SLOTS, MAX_HOST_OBJECTS);
            let room = self
                .budget
                .saturating_sub(self.linear)
                .saturating_sub(self.held)
                .saturating_sub(self.open_connections() * CONNECTION_BYTES);
            let granted = wanted.min(room / HOST_OBJECT_BYTES);
            if granted > self.slots {
                self.slots = granted;
                table.set_max_capacity(granted);
                self.publish();
                free = granted - live;
            } else {
                self.objects_refused = Some(self.refusal());
            }
        }
        // Count again before the free slots could drop under the low-water mark.
        self.calls_before_count = free.saturating_sub(low_water) / self.per_host_call;
    }

    /// Grant the next step when fewer slots than this may be free: two host calls' worth.
    fn low_water(&self) -> usize {
        2 * self.per_host_call
    }

    /// What was held when the budget refused, for a trap that followed.
    pub fn refusal(&self) -> Refusal {
        Refusal {
            linear: self.linear,
            objects: self.slots,
            connections: self.open_connections(),
            held: self.held,
        }
    }
}

/// A call's open outgoing connections, shared between its store (which charges them to the
/// memory budget) and the connection tasks (which end them).
#[derive(Debug)]
pub struct OpenConnections {
    open: AtomicUsize,
    /// Linear memory and table slots charged, as last published by the store.
    reserved: AtomicUsize,
    budget: usize,
    max_open: usize,
}

/// Why a connection was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// `max_connections` of the call are open.
    PerCall { open: usize },
    /// Another connection would pass the memory budget.
    Memory { reserved: usize, open: usize },
}

impl OpenConnections {
    pub fn new(budget: usize, max_open: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            budget,
            max_open,
        })
    }

    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Charge one more connection; the guard gives it back when dropped.
    pub fn open(self: &Arc<Self>) -> Result<ConnectionCharge, ConnectionRefusal> {
        let reserved = self.reserved.load(Ordering::Acquire);
        let result = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                let fits = reserved + (open + 1) * CONNECTION_BYTES <= self.budget;
                (open < self.max_open && fits).then_some(open + 1)
            });
        match result {
            Ok(_) => Ok(ConnectionCharge {
                connections: self.clone(),
            }),
            Err(open) if open >= self.max_open => Err(ConnectionRefusal::PerCall { open }),
            Err(open) => Err(ConnectionRefusal::Memory { reserved, open }),
        }
    }
}

/// One open connection's charge; dropped when the connection ends.
#[derive(Debug)]
pub struct ConnectionCharge {
    connections: Arc<OpenConnections>,
}

impl Drop for ConnectionCharge {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn call(budget: usize, max_connections: usize) -> (CallMemory, ResourceTable) {
        let mut table = ResourceTable::new();
        let memory = CallMemory::new(
            budget,
            0,
            OpenConnections::new(budget, max_connections),
            &mut table,
        );
        (memory, table)
    }

    /// Push objects through host calls the way the plugin would, until the table refuses.
    fn fill(memory: &mut CallMemory, table: &mut ResourceTable, count: usize) -> usize {
        for pushed in 0..count {
            memory.before_host_call(table);
            if table.push(pushed).is_err() {
                return pushed;
            }
        }
        count
    }

    fn charged(memory: &CallMemory) -> usize {
        memory.linear + memory.host_bytes()
    }

    #[test]
    fn objects_are_granted_in_steps_while_the_budget_pays_for_them() {
        let (mut memory, mut table) = call(64 * MIB, 16);
        assert!(memory.memory_growing(0, 2 * MIB));
        assert_eq!(table.max_capacity(), FIRST_SLOTS);
        assert_eq!(fill(&mut memory, &mut table, 100), 100);
        assert!(table.max_capacity() >= 100);
        assert!(charged(&memory) <= 64 * MIB);
        assert!(memory.objects_refused.is_none());
    }

    #[test]
    fn objects_stop_where_the_budget_ends_and_the_refusal_is_kept() {
        let (mut memory, mut table) = call(64 * MIB, 16);
        assert!(memory.memory_growing(0, 8 * MIB));
        let pushed = fill(&mut memory, &mut table, 10_000);
        // 56 MiB left at 64 KiB a slot, granted in doubling steps: 512 slots at most.
        assert!((256..=896).contains(&pushed), "{pushed}");
        assert!(charged(&memory) <= 64 * MIB, "{}", charged(&memory));
        let refusal = memory.objects_refused.expect("the budget refused a step");
        assert_eq!(refusal.linear, 8 * MIB);
        assert!(refusal.host_bytes() + refusal.linear <= 64 * MIB);
    }

    #[test]
    fn the_table_never_passes_the_hard_cap() {
        let (mut memory, mut table) = call(1024 * MIB, 16);
        assert_eq!(fill(&mut memory, &mut table, 5_000), MAX_HOST_OBJECTS);
    }

    #[test]
    fn linear_memory_cannot_grow_into_what_objects_hold() {
        let (mut memory, mut table) = call(16 * MIB, 16);
        assert!(memory.memory_growing(0, MIB));
        fill(&mut memory, &mut table, 64);
        let host = memory.host_bytes();
        assert!(host >= 64 * HOST_OBJECT_BYTES);
        assert!(!memory.memory_growing(MIB, 16 * MIB - host + 1));
        assert_eq!(memory.refused_growth, Some(16 * MIB - host + 1));
        assert!(memory.memory_growing(MIB, 16 * MIB - host));
    }

    #[test]
    fn freed_objects_make_room_without_new_slots() {
        let (mut memory, mut table) = call(4 * MIB, 16);
        let first: Vec<_> = (0..20)
            .map(|i| {
                memory.before_host_call(&mut table);
                table.push(i).unwrap()
            })
            .collect();
        let slots = memory.slots;
        for handle in first {
            table.delete(handle).unwrap();
        }
        assert_eq!(fill(&mut memory, &mut table, 20), 20);
        assert_eq!(memory.slots, slots);
    }

    #[test]
    fn connections_are_capped_per_call_and_by_the_budget() {
        let (mut memory, _table) = call(8 * MIB, 64);
        assert!(memory.memory_growing(0, 4 * MIB));
        let connections = memory.connections.clone();
        let mut open = Vec::new();
        let refusal = loop {
            match connections.open() {
                Ok(charge) => open.push(charge),
                Err(refusal) => break refusal,
            }
        };
        assert!(
            matches!(refusal, ConnectionRefusal::Memory { .. }),
            "{refusal:?}"
        );
        assert!(charged(&memory) <= 8 * MIB);
        // Open connections keep linear memory from growing into their share.
        assert!(!memory.memory_growing(4 * MIB, 8 * MIB));
        open.clear();
        assert!(memory.memory_growing(4 * MIB, 6 * MIB));

        let (_memory, _table) = call(64 * MIB, 3);
        let connections = _memory.connections.clone();
        let held: Vec<_> = (0..3).map(|_| connections.open().unwrap()).collect();
        assert_eq!(
            connections.open().unwrap_err(),
            ConnectionRefusal::PerCall { open: 3 }
        );
        drop(held);
        assert!(connections.open().is_ok());
    }

    #[test]
    fn a_host_call_listing_many_preopens_finds_its_slots() {
        let mut table = ResourceTable::new();
        let mut memory =
            CallMemory::new(64 * MIB, 12, OpenConnections::new(64 * MIB, 16), &mut table);
        for call in 0..20 {
            memory.before_host_call(&mut table);
            // One host call that creates an object per preopened folder, plus one.
            for object in 0..13 {
                table
                    .push((call, object))
                    .unwrap_or_else(|e| panic!("call {call}, object {object}: {e}"));
            }
        }
        assert!(memory.objects_refused.is_none());
    }

    #[test]
    fn what_the_host_holds_for_the_whole_call_leaves_less_for_the_rest() {
        let (mut memory, mut table) = call(8 * MIB, 16);
        memory.hold(2 * MIB);
        assert!(!memory.memory_growing(0, 7 * MIB));
        assert!(memory.memory_growing(0, 5 * MIB));
        fill(&mut memory, &mut table, 1000);
        assert!(charged(&memory) <= 8 * MIB, "{}", charged(&memory));
        assert_eq!(memory.refusal().held, 2 * MIB);
    }

    #[test]
    fn a_tiny_budget_still_gets_a_slot() {
        let (memory, table) = call(MIB, 16);
        assert_eq!(table.max_capacity(), 2);
        assert!(memory.host_bytes() <= MIB / 8);
    }
}
