//! The standard `process_*` metrics (as the Prometheus client libraries name them), read from
//! `/proc/self` on each scrape: CPU time, resident and virtual memory, open and maximum file
//! descriptors, start time. `prometheus-client` has no process collector of its own.

use super::{Kind, Snapshot};

/// Adds the process families to `s` (those that cannot be read are left out).
pub fn collect(s: &mut Snapshot) {
    let ticks = sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64;
    let page = sysconf(libc::_SC_PAGESIZE).unwrap_or(4096) as f64;
    if let Some(st) = read_stat() {
        s.single(
            "process_cpu_seconds_total",
            Kind::Counter,
            "Total user and system CPU time spent in seconds.",
            (st.utime + st.stime) as f64 / ticks,
        );
        s.single(
            "process_virtual_memory_bytes",
            Kind::Gauge,
            "Virtual memory size in bytes.",
            st.vsize as f64,
        );
        s.single(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes.",
            st.rss_pages as f64 * page,
        );
        if let Some(boot) = boot_time() {
            s.single(
                "process_start_time_seconds",
                Kind::Gauge,
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + st.starttime as f64 / ticks,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        s.single(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Some(max) = max_fds() {
        s.single(
            "process_max_fds",
            Kind::Gauge,
            "Maximum number of open file descriptors.",
            max as f64,
        );
    }
}

fn sysconf(name: libc::c_int) -> Option<i64> {
    nix::unistd::sysconf(match name {
        libc::_SC_CLK_TCK => nix::unistd::SysconfVar::CLK_TCK,
        _ => nix::unistd::SysconfVar::PAGE_SIZE,
    })
    .ok()
    .flatten()
    .filter(|v| *v > 0)
}

struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Fields of `/proc/self/stat` (proc(5)); the command name in parentheses may hold spaces, so
/// the fields are counted after its closing parenthesis.
fn read_stat() -> Option<Stat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0.
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: num(14)?,
        stime: num(15)?,
        starttime: num(22)?,
        vsize: num(23)?,
        rss_pages: num(24)?,
    })
}

fn boot_time() -> Option<u64> {
    std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 123456 10485760 2560 18446744073709551615";
        let st = parse_stat(line).unwrap();
        assert_eq!((st.utime, st.stime), (250, 50));
        assert_eq!(st.starttime, 123456);
        assert_eq!(st.vsize, 10485760);
        assert_eq!(st.rss_pages, 2560);
    }

    #[test]
    fn reads_this_process() {
        let st = read_stat().unwrap();
        assert!(st.vsize > 0 && st.rss_pages > 0);
        assert!(max_fds().unwrap() > 0);
        assert!(boot_time().unwrap() > 1_000_000_000);
    }
}
