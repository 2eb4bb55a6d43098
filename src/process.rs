//! Facts about the whole process, read at snapshot time: its resident memory, its open files and their limit.

/// The process's resident set size in bytes: the `VmRSS` line of `/proc/self/status` on Linux (the same figure
/// as `/proc/self/statm`'s second field times the page size, without needing the page size). `None` on other
/// systems, or when the file cannot be read or parsed.
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_vm_rss(&status)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The number of open file descriptors of the process: the entries of `/proc/self/fd` on Linux (the
/// directory handle used to list them included, as Prometheus client libraries count). `None` elsewhere.
pub(crate) fn open_fds() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let entries = std::fs::read_dir("/proc/self/fd").ok()?;
        Some(entries.count() as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The soft limit on open file descriptors (`RLIMIT_NOFILE`): the `Max open files` line of
/// `/proc/self/limits` on Linux. `None` elsewhere, when unlimited, or when it cannot be read.
pub(crate) fn max_fds() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        parse_max_open_files(&limits)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The soft limit of the `Max open files  1024  524288  files` line of a `/proc/<pid>/limits` text.
#[cfg_attr(not(any(target_os = "linux", test)), allow(dead_code))]
fn parse_max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `VmRSS:   1234 kB` line of a `/proc/<pid>/status` text, in bytes.
#[cfg_attr(not(any(target_os = "linux", test)), allow(dead_code))]
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    let unit = match fields.next() {
        Some("kB") => 1024,
        Some("mB") => 1024 * 1024,
        Some(_) => return None,
        None => 1,
    };
    value.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_vm_rss_line_only() {
        let status =
            "Name:\tperfscope\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t18446744073709551615 kB\n"), None);
    }

    #[test]
    fn parses_the_soft_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files("Max open files  unlimited  unlimited  files\n"),
            None
        );
        assert_eq!(
            parse_max_open_files("Max processes 10 10 processes\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_open_files_and_their_limit() {
        let open = open_fds().unwrap();
        let max = max_fds().unwrap();
        // stdin, stdout, stderr and the directory handle at least.
        assert!(open >= 4 && open <= max, "{open} of {max}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let rss = resident_memory_bytes().unwrap();
        // A running test binary holds at least its code and a few pages of heap, and less than the machine.
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
