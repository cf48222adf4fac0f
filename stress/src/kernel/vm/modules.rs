//! The kernel modules a guest loads before it can use a disk: a distribution
//! kernel builds virtio and ext4 as modules, so the files of the O_DIRECT
//! cases would otherwise live on tmpfs, which takes O_DIRECT only from 6.6.
//! The modules come from the image's own tree (`lib/modules/RELEASE` beside
//! its `boot/`, as `dpkg -x` and an installed system lay them out) and their
//! order from each module's `.modinfo` `depends=` (a package ships no
//! modules.dep; depmod makes it at install). Loaded with finit_module, which
//! takes an uncompressed .ko.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What the guest needs for an ext4 disk on virtio: the PCI transport, the
/// block driver, ext4 and the crc32c it asks the crypto API for at mount
/// (a soft dependency, which modinfo's `depends=` does not list).
pub const WANTED: [&str; 4] = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"];

/// The modules directory of an image: `--vm-modules`, or
/// `IMAGE/../../lib/modules/RELEASE` when it exists.
pub fn dir_for(image: &Path, release: &str) -> Option<PathBuf> {
    let root = image.parent()?.parent()?;
    let d = root.join("lib/modules").join(release);
    d.is_dir().then_some(d)
}

/// A module's name as the kernel spells it: the file stem, `-` as `_`.
fn name_of(path: &Path) -> Option<String> {
    let f = path.file_name()?.to_str()?;
    Some(f.strip_suffix(".ko")?.replace('-', "_"))
}

/// Every .ko under `dir`, by name; compressed ones are named apart, for
/// the error.
fn index(dir: &Path, out: &mut HashMap<String, PathBuf>, compressed: &mut usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            index(&p, out, compressed);
        } else if let Some(n) = name_of(&p) {
            out.entry(n).or_insert(p);
        } else if p.to_string_lossy().contains(".ko.") {
            *compressed += 1;
        }
    }
}

/// The `depends=` of a module's .modinfo: names, comma-separated.
pub fn depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else {
        return Vec::new();
    };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// The .ko files to load, each after what it depends on; the wanted ones
/// the kernel has built in are simply absent from the tree (and from the
/// list). Err when the tree has none of them in a loadable form.
pub fn load_order(dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let mut idx = HashMap::new();
    let mut compressed = 0;
    index(dir, &mut idx, &mut compressed);
    if idx.is_empty() {
        return Err(match compressed {
            0 => format!("no modules in {}", dir.display()),
            n => format!(
                "{n} modules in {} are compressed; finit_module needs .ko files",
                dir.display()
            ),
        });
    }
    let mut order = Vec::new();
    let mut seen = Vec::new();
    for w in wanted {
        visit(w, &idx, &mut seen, &mut order)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    idx: &HashMap<String, PathBuf>,
    seen: &mut Vec<String>,
    order: &mut Vec<PathBuf>,
) -> Result<(), String> {
    if seen.iter().any(|s| s == name) {
        return Ok(());
    }
    seen.push(name.to_string());
    // Not in the tree: built in (or absent, which the mount will tell).
    let Some(path) = idx.get(name) else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for d in depends(&bytes) {
        visit(&d, idx, seen, order)?;
    }
    order.push(path.clone());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ko(depends: &str) -> Vec<u8> {
        let mut b = b"\x7fELF....\0license=GPL\0".to_vec();
        b.extend_from_slice(format!("depends={depends}\0vermagic=6.1.0 SMP\0").as_bytes());
        b
    }

    #[test]
    fn dependencies_load_first_and_once() {
        let dir = std::env::temp_dir().join(format!("gupcheck-modules-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, deps) in [
            ("kernel/fs/ext4/ext4.ko", "jbd2,mbcache,crc16"),
            ("kernel/fs/jbd2/jbd2.ko", ""),
            ("kernel/fs/mbcache.ko", ""),
            ("kernel/lib/crc16.ko", ""),
            ("kernel/drivers/virtio/virtio_blk.ko", "virtio,virtio_ring"),
            (
                "kernel/drivers/virtio/virtio_pci.ko",
                "virtio_ring,virtio-pci-modern-dev,virtio",
            ),
            ("kernel/drivers/virtio/virtio-pci-modern-dev.ko", "virtio"),
            ("kernel/drivers/virtio/virtio_ring.ko", "virtio"),
            ("kernel/drivers/virtio/virtio.ko", ""),
        ] {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, ko(deps)).unwrap();
        }
        let order = load_order(&dir, &WANTED).unwrap();
        let names: Vec<String> = order.iter().map(|p| name_of(p).unwrap()).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_pci_modern_dev",
                "virtio_pci",
                "virtio_blk",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ],
            "crc32c_generic is built in here: not listed"
        );
        let empty = dir.join("empty");
        std::fs::create_dir_all(empty.join("kernel")).unwrap();
        std::fs::write(empty.join("kernel/ext4.ko.xz"), b"").unwrap();
        assert!(load_order(&empty, &WANTED)
            .unwrap_err()
            .contains("compressed"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_tree_beside_the_image_is_found() {
        let dir = std::env::temp_dir().join(format!("gupcheck-modtree-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::create_dir_all(dir.join("lib/modules/6.1.0-50-amd64")).unwrap();
        let image = dir.join("boot/vmlinuz-6.1.0-50-amd64");
        assert_eq!(
            dir_for(&image, "6.1.0-50-amd64"),
            Some(dir.join("lib/modules/6.1.0-50-amd64"))
        );
        assert_eq!(dir_for(&image, "6.12.0"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn depends_is_read_from_modinfo() {
        assert_eq!(
            depends(&ko("jbd2,mbcache,crc16")),
            ["jbd2", "mbcache", "crc16"]
        );
        assert!(depends(&ko("")).is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }
}
