//! Facts about the whole process, read at snapshot time: its resident memory.

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

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let rss = resident_memory_bytes().unwrap();
        // A running test binary holds at least its code and a few pages of heap, and less than the machine.
        assert!(rss > 1 << 20 && rss < 1 << 40, "{rss}");
    }
}
