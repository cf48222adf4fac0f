//! The kernel image `--vm` boots: an x86 bzImage, whose setup header
//! (Documentation/arch/x86/boot.rst) carries the "HdrS" magic at 0x202 and,
//! from boot protocol 2.00, a pointer at 0x20e to the version string that
//! `uname -r` will print. Reading it before booting names the model preset
//! and turns a wrong file into a one-line error instead of a silent guest.

use std::path::Path;

/// What the image says of itself.
#[derive(Debug, PartialEq, Eq)]
pub struct Image {
    /// The first word of the version string: the guest's `uname -r`.
    pub release: String,
    /// The whole version string ("6.1.0-50-amd64 (debian-kernel@...) #1 SMP ...").
    pub version: String,
}

const MAGIC_AT: usize = 0x202;
const VERSION_PTR_AT: usize = 0x20e;

/// Reads and checks a kernel image file.
pub fn read(path: &Path) -> Result<Image, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read kernel image {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The setup header of a bzImage.
pub fn parse(bytes: &[u8]) -> Result<Image, String> {
    if bytes.get(MAGIC_AT..MAGIC_AT + 4) != Some(b"HdrS") {
        return Err("not an x86 bzImage (no \"HdrS\" setup header at 0x202): \
                    --vm boots x86_64 kernels such as arch/x86/boot/bzImage or /boot/vmlinuz-*"
            .into());
    }
    let ptr = u16::from_le_bytes([bytes[VERSION_PTR_AT], bytes[VERSION_PTR_AT + 1]]) as usize;
    // The pointer is relative to the start of the setup code, 0x200 bytes in.
    let at = ptr + 0x200;
    let version = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == 0).map(|end| &rest[..end]))
        .filter(|_| ptr != 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .ok_or("a bzImage without a kernel version string (boot protocol before 2.00?)")?;
    let release = version
        .split_whitespace()
        .next()
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .ok_or_else(|| format!("cannot read a release from the image's version '{version}'"))?
        .to_string();
    Ok(Image { release, version })
}

#[cfg(test)]
pub(crate) fn fake(version: &str) -> Vec<u8> {
    let mut b = vec![0u8; 0x400];
    b[MAGIC_AT..MAGIC_AT + 4].copy_from_slice(b"HdrS");
    let ptr: u16 = 0x100;
    b[VERSION_PTR_AT..VERSION_PTR_AT + 2].copy_from_slice(&ptr.to_le_bytes());
    let at = 0x200 + ptr as usize;
    b[at..at + version.len()].copy_from_slice(version.as_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_release_is_the_first_word_of_the_version_string() {
        let img = parse(&fake(
            "6.1.0-50-amd64 (debian-kernel@lists.debian.org) #1 SMP",
        ))
        .unwrap();
        assert_eq!(img.release, "6.1.0-50-amd64");
        assert!(img.version.ends_with("#1 SMP"));
    }

    #[test]
    fn what_is_not_a_bzimage_is_refused_in_one_line() {
        let e = parse(b"[package]\nname = \"x\"\n").unwrap_err();
        assert!(e.starts_with("not an x86 bzImage"), "{e}");
        assert!(!e.contains('\n'));
        let mut b = fake("6.1.0");
        b[VERSION_PTR_AT] = 0;
        b[VERSION_PTR_AT + 1] = 0;
        assert!(parse(&b).unwrap_err().contains("without a kernel version"));
        assert!(parse(&fake("(none)"))
            .unwrap_err()
            .contains("cannot read a release"));
        let e = read(Path::new("/nonexistent/bzImage")).unwrap_err();
        assert!(
            e.starts_with("cannot read kernel image /nonexistent/bzImage:"),
            "{e}"
        );
    }
}
