//! What the operating system lets the host do, checked at startup so that
//! the host caps its connections below it instead of failing at random
//! past it, and says how to raise it (the way Elasticsearch does):
//!
//! | limit | each connection takes | past it |
//! |---|---|---|
//! | `vm.max_map_count` (65,530 by default) | a few memory mappings: its linear memory, fiber stack, tables | instantiation fails (ENOMEM) |
//! | open files (`ulimit -n`) | one socket over HTTP/1.1 (over HTTP/2, a share of its TCP connection's) | `accept` fails (EMFILE): no answer at all |
//!
//! The host raises its own open-files limit to the hard limit first, as
//! most servers do: the soft limit is often 1,024 while the hard one is far
//! higher.

/// Memory mappings one connection's instance takes, as measured (500 idle
/// connections: 7.0 each, `/proc/PID/maps` before and after), rounded up.
pub const MAPPINGS_PER_CONNECTION: usize = 8;

/// Mappings kept free for everything else the process maps (threads,
/// buffers, compiled code).
const MAPPINGS_KEPT_FREE: usize = 2048;

/// Files kept free for everything else: the listeners, component files read
/// at reload, Redis, the admin API, and the connections accepted only to be
/// answered `503`.
const FILES_KEPT_FREE: usize = 256;

/// The kernel's limit on mappings, and how many the process has now
/// (`None` where there is no such limit to read: not Linux).
fn mappings() -> Option<(usize, usize)> {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count").ok()?.trim().parse().ok()?;
    let used = std::fs::read_to_string("/proc/self/maps").ok()?.lines().count();
    Some((limit, used))
}

/// The process's open-files limit, raised to the hard limit, and how many
/// files it has open now (`None` where they cannot be read).
fn open_files() -> Option<(usize, usize)> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        limit.current = Some(maximum);
        if setrlimit(Resource::Nofile, limit).is_err() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    // No limit (`None`): no cap from it.
    let current = usize::try_from(limit.current?).unwrap_or(usize::MAX);
    let used = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some((current, used))
}

/// How many connections the kernel's limits leave room for.
#[derive(Debug, PartialEq)]
pub struct Room {
    /// WebSocket connections: each has an instance, whose memory takes
    /// mappings.
    pub connections: usize,
    /// The TCP connections that may carry them: one WebSocket each over
    /// HTTP/1.1, any number over HTTP/2.
    pub sockets: usize,
    /// For each limit that allows fewer than asked for, how to raise it.
    pub warnings: Vec<String>,
}

/// How many of `wanted` connections the kernel allows, and for each limit
/// that allows fewer, a warning that says how to raise it.
pub fn connections_allowed(wanted: usize) -> Room {
    let mut room = Room { connections: wanted, sockets: wanted, warnings: Vec::new() };
    if let Some((limit, used)) = mappings() {
        let fit = limit.saturating_sub(used + MAPPINGS_KEPT_FREE) / MAPPINGS_PER_CONNECTION;
        if fit < wanted {
            let needed = used + MAPPINGS_KEPT_FREE + wanted * MAPPINGS_PER_CONNECTION;
            room.warnings.push(format!(
                "vm.max_map_count is {limit}: room for about {fit} connections, not max-connections = {wanted}. \
                 To allow {wanted}: sysctl -w vm.max_map_count={needed}"
            ));
            room.connections = fit;
        }
    }
    if let Some((limit, used)) = open_files() {
        let fit = limit.saturating_sub(used + FILES_KEPT_FREE);
        if fit < wanted {
            let needed = used + FILES_KEPT_FREE + wanted;
            room.warnings.push(format!(
                "the open-files limit (ulimit -n) is {limit}: room for about {fit} TCP connections carrying \
                 WebSockets (one each over HTTP/1.1; over HTTP/2, one carries many), not max-connections = {wanted}. To \
                 allow {wanted}, raise the hard limit to {needed} (systemd: LimitNOFILE={needed}; docker: --ulimit \
                 nofile={needed}; as root: ulimit -Hn {needed})"
            ));
            room.sockets = fit;
        }
    }
    room.connections = room.connections.max(1);
    room.sockets = room.sockets.clamp(1, room.connections);
    room
}

/// What the log says when the kernel refuses an instance its memory. The
/// host sizes itself at startup for `vm.max_map_count` and for x86-64's
/// address space (`wasm::memory`), so what is left is a map count lowered
/// since, the kernel's overcommit policy, or a cap on address space.
pub const MEMORY_REFUSED: &str = "the kernel refused memory (ENOMEM): vm.max_map_count (see the warning at startup, \
     if any), memory overcommit, or an address-space limit (ulimit -v)";

/// Whether `error` is the kernel refusing an instance its memory (ENOMEM).
pub fn memory_refused(error: &wasmtime::Error) -> bool {
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
        assert_eq!(connections_allowed(10), Room { connections: 10, sockets: 10, warnings: vec![] });
        if let Some((limit, _)) = mappings() {
            let room = connections_allowed(limit);
            assert!(room.connections < limit && room.sockets <= room.connections);
            assert!(room.warnings.iter().any(|warning| warning.contains("sysctl -w vm.max_map_count=")), "{room:?}");
        }
        if let Some((limit, _)) = open_files() {
            let room = connections_allowed(limit);
            assert!(room.sockets < limit);
            assert!(room.warnings.iter().any(|warning| warning.contains("ulimit -n")), "{room:?}");
        }
    }
}
