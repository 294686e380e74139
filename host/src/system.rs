//! What the operating system lets the host do: on Linux, a process may
//! have at most `vm.max_map_count` memory mappings (65,530 by default), and
//! each connection's instance takes a few (its linear memory and guard, its
//! fiber stack, its tables). Past that, instantiation fails; the host caps
//! its connections below it instead, and says at startup how to raise it,
//! the way Elasticsearch does.

/// Memory mappings one connection's instance takes, as measured (500 idle
/// connections: 7.0 each, `/proc/PID/maps` before and after), rounded up.
pub const MAPPINGS_PER_CONNECTION: usize = 8;

/// Mappings kept free for everything else the process maps (threads,
/// buffers, compiled code).
const MAPPINGS_KEPT_FREE: usize = 2048;

/// The kernel's limit on mappings, and how many the process has now
/// (`None` where there is no such limit to read: not Linux).
fn mappings() -> Option<(usize, usize)> {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    let used = std::fs::read_to_string("/proc/self/maps").ok()?.lines().count();
    Some((limit, used))
}

/// How many of `wanted` connections the kernel's mapping limit allows; if
/// fewer, a warning that says how to raise it.
pub fn connections_allowed(wanted: usize) -> (usize, Option<String>) {
    let Some((limit, used)) = mappings() else { return (wanted, None) };
    let free = limit.saturating_sub(used + MAPPINGS_KEPT_FREE);
    let allowed = free / MAPPINGS_PER_CONNECTION;
    if allowed >= wanted {
        return (wanted, None);
    }
    let needed = used + MAPPINGS_KEPT_FREE + wanted * MAPPINGS_PER_CONNECTION;
    let warning = format!(
        "vm.max_map_count is {limit}: room for about {allowed} connections, not max-connections = {wanted}; \
         the host takes {allowed} (more get 503). To allow {wanted}: sysctl -w vm.max_map_count={needed}"
    );
    (allowed.max(1), Some(warning))
}

/// What the log says when the kernel refuses an instance its memory.
pub const OUT_OF_MAPPINGS: &str =
    "the kernel refused memory (ENOMEM): most likely vm.max_map_count; see the warning at startup";

/// Whether `error` is the kernel refusing memory (mappings) to an instance.
pub fn out_of_mappings(error: &wasmtime::Error) -> bool {
    const ENOMEM: i32 = 12;
    error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(ENOMEM))
            || cause.to_string().contains("os error 12")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_connections_always_fit_and_too_many_are_explained() {
        assert_eq!(connections_allowed(10), (10, None));
        if let Some((limit, _)) = mappings() {
            let (allowed, warning) = connections_allowed(limit);
            assert!(allowed < limit);
            let warning = warning.expect("a warning");
            assert!(warning.contains("sysctl -w vm.max_map_count="), "{warning}");
        }
    }
}
