//! What the running kernel tells through text and bits, parsed without a
//! syscall so that recorded inputs test it: `uname -r` to the model's preset,
//! /proc/self/pagemap entries, /proc/kpageflags, /proc/self/smaps and the
//! filesystem magic of `statfs`.

use gupcheck_model::PresetId;

/// The release presets and the first kernel version whose protocol each
/// models (the model's presets carry names, not versions). `6.0` is 5.19's
/// PageAnonExclusive protocol; `latest` begins with 6.10's
/// `try_grab_folio_fast` (the longterm check after the reference).
const RELEASES: [((u32, u32), PresetId); 7] = [
    ((5, 7), PresetId::V5_7),
    ((5, 8), PresetId::V5_8),
    ((5, 10), PresetId::V5_10),
    ((5, 11), PresetId::V5_11),
    ((5, 19), PresetId::V6_0),
    ((6, 1), PresetId::V6_1),
    ((6, 10), PresetId::Latest),
];

/// `major.minor` of a `uname -r` string ("6.18.44-fc-v1252" -> (6, 18)).
pub fn version(release: &str) -> Result<(u32, u32), String> {
    let mut it = release.split(['.', '-', '+']);
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u32>().ok());
    match (num(it.next()), num(it.next())) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(format!(
            "cannot read a kernel version from '{release}' (expected MAJOR.MINOR...)"
        )),
    }
}

/// The preset nearest below (or at) the release `uname -r` names.
pub fn preset_for_release(release: &str) -> Result<PresetId, String> {
    let v = version(release)?;
    RELEASES
        .iter()
        .rev()
        .find(|(from, _)| *from <= v)
        .map(|&(_, p)| p)
        .ok_or_else(|| {
            format!(
                "kernel {release} is older than every release preset (5.7): pick one with --preset"
            )
        })
}

/// One /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagemapEntry {
    pub present: bool,
    pub swapped: bool,
    /// Bit 56: the page is mapped exclusively (by this process only).
    pub exclusive: bool,
    /// The page frame number; 0 without CAP_SYS_ADMIN.
    pub pfn: u64,
}

pub fn pagemap_entry(raw: u64) -> PagemapEntry {
    let present = raw >> 63 & 1 == 1;
    PagemapEntry {
        present,
        swapped: raw >> 62 & 1 == 1,
        exclusive: raw >> 56 & 1 == 1,
        pfn: if present { raw & ((1 << 55) - 1) } else { 0 },
    }
}

/// KPF_THP (include/uapi/linux/kernel-page-flags.h): the page belongs to a
/// transparent huge page, however it is mapped.
pub const KPF_THP: u32 = 22;

pub fn kpageflag(flags: u64, bit: u32) -> bool {
    flags >> bit & 1 == 1
}

/// The AnonHugePages of the VMA of /proc/self/smaps that holds `addr`, in
/// kB: the PMD-mapped anonymous THP memory of that VMA. `None` if no VMA
/// holds `addr` or its block has no such line.
pub fn anon_huge_kb(smaps: &str, addr: usize) -> Option<u64> {
    let mut inside = false;
    for line in smaps.lines() {
        // A VMA's header: "start-end perms offset dev inode [path]".
        let range = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .and_then(|(a, b)| {
                Some((
                    usize::from_str_radix(a, 16).ok()?,
                    usize::from_str_radix(b, 16).ok()?,
                ))
            });
        if let Some((start, end)) = range {
            inside = (start..end).contains(&addr);
            continue;
        }
        if inside {
            if let Some(rest) = line.strip_prefix("AnonHugePages:") {
                return rest.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

/// The model's gup_longterm.c backing for a filesystem magic (statfs
/// f_type): ext4 keeps buffer heads on its page cache, xfs and btrfs do
/// not. `None`: neither flavour (tmpfs, which supports writable longterm
/// pins, and the rest, which gup_longterm.c skips).
pub fn fs_backing(magic: u64) -> Option<&'static str> {
    const EXT4: u64 = 0xEF53;
    const XFS: u64 = 0x5846_5342;
    const BTRFS: u64 = 0x9123_683E;
    match magic {
        EXT4 => Some("ext4-like (buffer heads)"),
        XFS | BTRFS => Some("xfs-like (iomap)"),
        _ => None,
    }
}

/// A filesystem's name for notes.
pub fn fs_name(magic: u64) -> String {
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        m => format!("filesystem magic {m:#x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_the_preset_at_or_below() {
        for (release, preset) in [
            ("6.18.44-fc-v1252", "latest"),
            ("6.10.0", "latest"),
            ("6.9.12-arch1", "6.1"),
            ("6.1.0-28-amd64", "6.1"),
            ("6.0.19", "6.0"),
            ("5.19.0", "6.0"),
            ("5.18.3", "5.11"),
            ("5.10.0-32-amd64", "5.10"),
            ("5.9", "5.8"),
            ("5.7.1", "5.7"),
        ] {
            assert_eq!(
                preset_for_release(release).unwrap().name(),
                preset,
                "{release}"
            );
        }
        assert!(preset_for_release("5.4.0")
            .unwrap_err()
            .contains("--preset"));
        assert!(preset_for_release("linux").unwrap_err().contains("'linux'"));
        assert!(version("6").is_err());
    }

    #[test]
    fn pagemap_bits() {
        let e = pagemap_entry(1 << 63 | 1 << 56 | 0x1234);
        assert_eq!(
            e,
            PagemapEntry {
                present: true,
                swapped: false,
                exclusive: true,
                pfn: 0x1234
            }
        );
        // A swap entry's low bits are type and offset, not a PFN.
        let s = pagemap_entry(1 << 62 | 0x55);
        assert!(s.swapped && !s.present && s.pfn == 0);
        assert!(kpageflag(1 << KPF_THP | 1, KPF_THP));
        assert!(!kpageflag(1 << 15, KPF_THP));
    }

    #[test]
    fn smaps_anon_huge_pages_of_the_vma_holding_an_address() {
        let smaps = "\
7f0000000000-7f0000400000 rw-p 00000000 00:00 0
Size:               4096 kB
AnonHugePages:      2048 kB
7f0000400000-7f0000401000 r--p 00000000 fd:00 123   /usr/lib/x.so
AnonHugePages:         0 kB
VmFlags: rd mr mw me
";
        assert_eq!(anon_huge_kb(smaps, 0x7f00_0020_0000), Some(2048));
        assert_eq!(anon_huge_kb(smaps, 0x7f00_0040_0000), Some(0));
        assert_eq!(anon_huge_kb(smaps, 0x1000), None);
    }

    #[test]
    fn filesystems_to_backings() {
        assert_eq!(fs_backing(0xEF53), Some("ext4-like (buffer heads)"));
        assert_eq!(fs_backing(0x5846_5342), Some("xfs-like (iomap)"));
        assert_eq!(fs_backing(0x0102_1994), None);
        assert_eq!(fs_name(0x0102_1994), "tmpfs");
    }
}
