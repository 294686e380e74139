//! Where instances' linear memories live, decided once at startup from
//! `instance-pool`, `max-connections` (with the routes' shared instances)
//! and the memories the routes' components define: reserved as each
//! instance starts, or taken from a pool reserved up front; and either wide
//! (4 GiB, the whole reach of a 32-bit memory, with guard regions: compiled
//! code needs no bounds checks) or as large as the largest `memory-limit`
//! (every access bounds-checked, 5-15% of a message's cost).
//!
//! | `instance-pool` | wide while every memory's reservation fits in | beyond |
//! |---|---|---|
//! | `false` | [`ON_DEMAND_ADDRESS_SPACE`], 96 TiB: 24,197 memories (a Rust handler has 1, a JavaScript one 2) | `memory-limit` each |
//! | `true` | [`WIDE_SLOTS_ADDRESS_SPACE`], 64 TiB, reserved up front: 16,384 memories | `memory-limit` slots |
//!
//! x86-64 gives a process 128 TiB of address space: without this, the
//! kernel refused the 32,232nd wide memory (ENOMEM), whatever
//! `vm.max_map_count` allowed. The choice is made at startup; a reload
//! keeps it (a component with more memories than counted then may find the
//! address space short, as it finds the pool full), a restart makes it again.

use crate::config::InstanceMode;
use anyhow::Context as _;
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

/// What each memory reserves without the pool, with wasmtime's defaults on
/// 64-bit hosts: 4 GiB and a guard region of 32 MiB on either side.
const WIDE_RESERVATION: u64 = (4 << 30) + 2 * (32 << 20);

/// The address space wide memories may take without the pool: three
/// quarters of x86-64's user address space (with 4-level paging, 47 bits:
/// 128 TiB), the rest left for the heap, stacks and compiled code. A
/// machine with less (aarch64 kernels with 39-bit addresses) runs out
/// earlier, as it did before this was checked.
const ON_DEMAND_ADDRESS_SPACE: u64 = 96 << 40;

/// Makes `engine` reserve each memory as its instance starts: wide if
/// `config`'s instances fit in [`ON_DEMAND_ADDRESS_SPACE`] that way, else as
/// large as the largest `memory-limit` (growth past it traps, so a memory
/// never moves; one that a reload's larger `memory-limit` lets grow past
/// it is moved to a reservation of exactly its new size). Decided at
/// startup: a reload keeps it. Returns whether the memories are wide.
pub(super) fn reserve_on_demand(engine: &mut Config, config: &crate::Config) -> bool {
    let memories = memories_needed(config).unwrap_or(MEMORIES_PER_INSTANCE);
    if fits_on_demand(instances(config), memories) {
        return true;
    }
    engine.memory_reservation(largest_memory_limit(config) as u64);
    engine.memory_guard_size(0);
    engine.memory_reservation_for_growth(0);
    false
}

/// Whether `instances` of `memories` each fit in [`ON_DEMAND_ADDRESS_SPACE`]
/// with wide reservations.
fn fits_on_demand(instances: usize, memories: u32) -> bool {
    (instances as u64).saturating_mul(u64::from(memories)).saturating_mul(WIDE_RESERVATION) <= ON_DEMAND_ADDRESS_SPACE
}

/// The instances that may exist at once: one per connection, and the
/// routes' shared instances, which live on between their connections.
fn instances(config: &crate::Config) -> usize {
    let shared: usize = config
        .routes
        .iter()
        .filter(|route| route.instance == InstanceMode::Shared)
        .map(|route| route.shared_instances)
        .sum();
    config.max_connections.saturating_add(shared)
}

/// The largest `memory-limit` of any route, in bytes.
fn largest_memory_limit(config: &crate::Config) -> usize {
    config.routes.iter().map(|route| route.memory_limit).max().unwrap_or_default()
}

/// The most memories any route's component defines (at least 1), or `None`
/// if that is not certain for one of them. A file that cannot be read or
/// parsed is reported when it is loaded.
fn memories_needed(config: &crate::Config) -> Option<u32> {
    config
        .routes
        .iter()
        .map(|route| std::fs::read(&route.component).ok().and_then(|bytes| defined_memories(&bytes)))
        .try_fold(1, |most, memories| Some(most.max(memories?)))
}

/// Room for instances allocated once, up front (wasmtime's pooling
/// allocator), instead of memory mapped and unmapped per connection.
#[derive(Clone, Copy, Debug)]
pub struct InstancePool {
    /// How many instances can exist at once: one per open connection.
    pub instances: u32,
    /// The largest linear memory of any instance, in bytes. The pool's
    /// instance memory can never exceed `instances` times this.
    pub memory_per_instance: usize,
    /// Linear memories per instance: two, or fewer if that is what lets
    /// wide slots fit (a component that defines more is then refused when
    /// it is loaded).
    pub memories_per_instance: u32,
}

/// Core instances, memories and tables the pool holds for each component
/// instance, and the most a component may have (one that needs more is
/// refused when it is loaded, not at some count of connections). A Rust
/// guest is its main module plus the small shim modules the component model
/// adds (3 core instances), with one memory and two tables; a Python guest
/// from componentize-py has 14 core instances, a JavaScript one two
/// memories. A core instance is only counted by the pool, so its budget is
/// generous; every memory and table slot is address space reserved up front.
pub(super) const CORE_INSTANCES_PER_INSTANCE: u32 = 32;
/// At most; see [`InstancePool::memories_per_instance`].
pub(super) const MEMORIES_PER_INSTANCE: u32 = 2;
pub(super) const TABLES_PER_INSTANCE: u32 = 4;

/// How much of a pool slot's linear memory is kept mapped when its instance
/// goes, zeroed in place for the next one.
const MEMORY_KEPT_RESIDENT: usize = 128 << 10;
/// The same for its tables.
const TABLE_KEPT_RESIDENT: usize = 16 << 10;
/// How many slots' decommits are gathered into one batch.
const DECOMMIT_BATCH: usize = 16;

/// The address space a pool's linear memories may take in wide slots: half
/// of x86-64's user address space (128 TiB), 8,192 instances of two
/// memories each, 16,384 of one.
const WIDE_SLOTS_ADDRESS_SPACE: u64 = 64 << 40;

/// How large a pool's memory slots are.
pub(super) enum Slots {
    /// 4 GiB, the reach of a 32-bit memory, with wasmtime's guard regions:
    /// compiled code needs no bounds checks.
    Wide,
    /// The largest `memory-limit`: every access is bounds-checked (5-15% of
    /// a message's cost, `make bench`).
    Compact,
}

impl InstancePool {
    /// The pool `config` calls for: an instance per connection, and the
    /// routes' shared instances, which live on between their connections;
    /// memories per instance as few as lets wide slots fit, if any number
    /// does.
    pub(super) fn for_config(config: &crate::Config) -> anyhow::Result<Self> {
        let instances = u32::try_from(instances(config)).context("max-connections is too large for a pool")?;
        let memory_per_instance = largest_memory_limit(config);
        let pool = Self { instances, memory_per_instance, memories_per_instance: MEMORIES_PER_INSTANCE };
        if pool.fits_wide_slots() {
            return Ok(pool);
        }
        // The routes' components may need fewer memory slots each (a Rust
        // handler has one), and fewer may fit.
        match memories_needed(config) {
            Some(needed @ ..MEMORIES_PER_INSTANCE) => {
                let fewer = Self { memories_per_instance: needed, ..pool };
                Ok(if fewer.fits_wide_slots() { fewer } else { pool })
            }
            _ => Ok(pool),
        }
    }

    /// Whether wide slots for every memory of the pool fit in
    /// [`WIDE_SLOTS_ADDRESS_SPACE`].
    pub(super) fn fits_wide_slots(&self) -> bool {
        u64::from(self.instances) * u64::from(self.memories_per_instance) * (4 << 30) <= WIDE_SLOTS_ADDRESS_SPACE
    }
}

/// The linear memories an instance of a component takes from the pool: those
/// its core modules define, where that is certain, as wasmtime counts them
/// when it loads the component into the pool. `None` if `bytes` cannot be
/// parsed, if a module is instantiated more than once or from inside a
/// nested component (wasmtime counts a memory per instantiation; such a
/// component keeps the pool at two memories per instance rather than have
/// a count made here refuse it at startup). The nested components
/// `wit-component` adds to give exports their types hold no modules.
fn defined_memories(bytes: &[u8]) -> Option<u32> {
    use wasmparser::{Instance, Payload};
    let mut memories = 0u32;
    let mut instantiated = std::collections::HashSet::new();
    // Whether each nested module or component being read is a component.
    let mut nested = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let in_component = nested.contains(&true);
        match payload.ok()? {
            Payload::ModuleSection { .. } if in_component => return None,
            Payload::ModuleSection { .. } => nested.push(false),
            Payload::ComponentSection { .. } => nested.push(true),
            Payload::End(_) => {
                nested.pop();
            }
            Payload::MemorySection(section) => memories = memories.saturating_add(section.count()),
            Payload::InstanceSection(section) => {
                for instance in section {
                    if let Instance::Instantiate { module_index, .. } = instance.ok()?
                        && (in_component || !instantiated.insert(module_index))
                    {
                        return None;
                    }
                }
            }
            _ => {}
        }
    }
    Some(memories)
}

/// Makes `config` allocate instances from `pool`, in `slots`.
pub(super) fn use_pool(config: &mut Config, pool: InstancePool, slots: Slots) {
    let mut pooling = PoolingAllocationConfig::new();
    pooling
        .total_component_instances(pool.instances)
        .total_core_instances(pool.instances.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .total_memories(pool.instances.saturating_mul(pool.memories_per_instance))
        .total_tables(pool.instances.saturating_mul(TABLES_PER_INSTANCE))
        .max_core_instances_per_component(CORE_INSTANCES_PER_INSTANCE)
        .max_memories_per_component(pool.memories_per_instance)
        .max_tables_per_component(TABLES_PER_INSTANCE)
        .total_stacks(pool.instances)
        .max_memory_size(pool.memory_per_instance)
        // A slot's memory is reset for its next instance: the pages a guest
        // touched (a Rust handler touches about 20 KiB), found with
        // PAGEMAP_SCAN where the kernel has it (6.7+), are zeroed in place
        // instead of unmapped, which would cost every thread of the host a
        // TLB flush and the next instance page faults.
        .linear_memory_keep_resident(MEMORY_KEPT_RESIDENT)
        .table_keep_resident(TABLE_KEPT_RESIDENT)
        .pagemap_scan(Enabled::Auto)
        // What still has to be unmapped is unmapped in batches.
        .decommit_batch_size(DECOMMIT_BATCH);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    if let Slots::Compact = slots {
        // wasmtime's defaults are the wide slots.
        config.memory_reservation(pool.memory_per_instance as u64);
        config.memory_guard_size(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_slots_fit_up_to_8192_instances_of_two_memories_and_16384_of_one() {
        let pool = |instances, memories_per_instance| InstancePool {
            instances,
            memory_per_instance: 64 << 20,
            memories_per_instance,
        };
        assert!(pool(8192, 2).fits_wide_slots());
        assert!(!pool(8193, 2).fits_wide_slots());
        assert!(!pool(10_000, 2).fits_wide_slots());
        assert!(pool(10_000, 1).fits_wide_slots());
        assert!(pool(16_384, 1).fits_wide_slots());
        assert!(!pool(16_385, 1).fits_wide_slots());
    }

    #[test]
    fn wide_memories_on_demand_fit_up_to_24197() {
        assert!(fits_on_demand(10_000, 2), "the default max-connections of JavaScript handlers");
        assert!(fits_on_demand(24_197, 1));
        assert!(!fits_on_demand(24_198, 1));
        assert!(!fits_on_demand(12_099, 2));
        assert!(!fits_on_demand(50_000, 1));
        assert!(!fits_on_demand(usize::MAX, 2));
    }

    #[test]
    fn the_memories_of_a_component_are_counted_where_the_count_is_certain() {
        // A core module with one memory of one page.
        let module = [b"\0asm\x01\0\0\0".as_slice(), &[5, 3, 1, 0, 1]].concat();
        let component = |modules: usize| {
            let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
            for _ in 0..modules {
                bytes.extend([1, module.len() as u8]);
                bytes.extend(&module);
            }
            bytes
        };
        assert_eq!(defined_memories(&component(0)), Some(0));
        assert_eq!(defined_memories(&component(1)), Some(1));
        assert_eq!(defined_memories(&component(2)), Some(2));
        assert_eq!(defined_memories(b"\0asm\x0d\0\x01\0\x01\x40"), None);
        // Core instance sections: module 0 instantiated once, then twice.
        let instantiate = |times: u8| {
            let mut section = vec![times];
            for _ in 0..times {
                section.extend([0, 0, 0]); // instantiate module 0 with no arguments
            }
            [vec![2, section.len() as u8], section].concat()
        };
        assert_eq!(defined_memories(&[component(1), instantiate(1)].concat()), Some(1));
        assert_eq!(defined_memories(&[component(1), instantiate(2)].concat()), None);
        // A nested component: without modules (as wit-component adds them) it
        // changes nothing; with one, the count is not certain.
        let nested = |modules| {
            let inner = component(modules);
            [vec![4, inner.len() as u8], inner].concat()
        };
        assert_eq!(defined_memories(&[component(1), nested(0)].concat()), Some(1));
        assert_eq!(defined_memories(&[component(1), nested(1)].concat()), None);
    }
}
