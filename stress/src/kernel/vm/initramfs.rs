//! The guest's root filesystem: a newc cpio (Documentation/filesystems/
//! ramfs-rootfs-initramfs.rst) holding gupcheck as /init, the shared
//! libraries it needs at the paths the dynamic loader looks for them (none for
//! a static build), the device nodes init needs before devtmpfs is mounted,
//! and the job. Uncompressed: every kernel that boots an initramfs reads it.

use cpio::newc::{trailer, Builder, ModeFileType};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the guest finds its job and writes what it sends back.
pub const JOB: &str = "gupcheck/job.json";
pub const OUT: &str = "/gupcheck/out";
/// The kernel modules, loaded in the order of their names.
pub const MODULES: &str = "gupcheck/modules";

/// The files of the archive, before it is written.
#[derive(Default)]
pub struct Tree {
    entries: Vec<Entry>,
}

enum Entry {
    Dir(String),
    File(String, u32, Vec<u8>),
    /// A character device: name, major, minor.
    Char(String, u32, u32),
}

impl Tree {
    /// The guest's tree: `binary` as /init (and its libraries), the kernel
    /// modules to load (as `MODULES/NN-name.ko`, in order), `job`.
    pub fn guest(
        binary: &Path,
        libs: &[PathBuf],
        modules: &[PathBuf],
        job: &[u8],
    ) -> Result<Tree, String> {
        let mut t = Tree::default();
        for d in [
            "dev",
            "proc",
            "sys",
            "tmp",
            "mnt",
            "gupcheck",
            "gupcheck/out",
        ] {
            t.dir(d);
        }
        // The kernel opens /dev/console for init's stdio before init can
        // mount anything; ttyS1 is the report channel.
        t.char("dev/console", 5, 1);
        t.char("dev/null", 1, 3);
        t.char("dev/ttyS0", 4, 64);
        t.char("dev/ttyS1", 4, 65);
        let read =
            |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        t.file("init", 0o755, read(binary)?);
        for lib in libs {
            let name = lib.to_string_lossy().trim_start_matches('/').to_string();
            t.file(&name, 0o755, read(lib)?);
        }
        for (i, m) in modules.iter().enumerate() {
            let base = m
                .file_name()
                .map_or("m.ko".into(), |n| n.to_string_lossy().into_owned());
            t.file(&format!("{MODULES}/{i:02}-{base}"), 0o644, read(m)?);
        }
        t.file(JOB, 0o644, job.to_vec());
        Ok(t)
    }

    pub fn dir(&mut self, name: &str) {
        if !self
            .entries
            .iter()
            .any(|e| matches!(e, Entry::Dir(d) if d == name))
        {
            self.entries.push(Entry::Dir(name.to_string()));
        }
    }

    fn char(&mut self, name: &str, major: u32, minor: u32) {
        self.entries
            .push(Entry::Char(name.to_string(), major, minor));
    }

    /// A file, after every missing parent directory.
    pub fn file(&mut self, name: &str, mode: u32, bytes: Vec<u8>) {
        let mut at = 0;
        while let Some(i) = name[at..].find('/') {
            self.dir(&name[..at + i]);
            at += i + 1;
        }
        self.entries
            .push(Entry::File(name.to_string(), mode, bytes));
    }

    pub fn write(&self, mut w: impl Write) -> std::io::Result<()> {
        for (ino, e) in (1u32..).zip(&self.entries) {
            let (b, data): (Builder, &[u8]) = match e {
                Entry::Dir(n) => (
                    Builder::new(n)
                        .mode(0o755)
                        .set_mode_file_type(ModeFileType::Directory)
                        .nlink(2),
                    &[],
                ),
                Entry::File(n, mode, bytes) => (
                    Builder::new(n)
                        .mode(*mode)
                        .set_mode_file_type(ModeFileType::Regular),
                    bytes,
                ),
                Entry::Char(n, major, minor) => (
                    Builder::new(n)
                        .mode(0o600)
                        .set_mode_file_type(ModeFileType::Char)
                        .rdev_major(*major)
                        .rdev_minor(*minor),
                    &[],
                ),
            };
            let size = u32::try_from(data.len())
                .map_err(|_| std::io::Error::other("a file over 4 GiB cannot go into a cpio"))?;
            let mut f = b.ino(ino).write(&mut w, size);
            f.write_all(data)?;
            f.finish()?;
        }
        trailer(&mut w)?;
        Ok(())
    }
}

/// The shared libraries a binary loads, as `ldd` lists them (the loader
/// itself included; the vDSO has no file): none for a static binary.
pub fn libraries(binary: &Path) -> Result<Vec<PathBuf>, String> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| {
            format!(
                "cannot run ldd on {} ({e}): pass a static gupcheck with --vm-guest-binary \
             (cargo build --release -p gupcheck --target x86_64-unknown-linux-musl)",
                binary.display()
            )
        })?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !ldd_says_static(&text) {
        return Err(format!("ldd {}: {}", binary.display(), text.trim()));
    }
    Ok(parse_ldd(&text))
}

fn ldd_says_static(text: &str) -> bool {
    text.contains("not a dynamic executable") || text.contains("statically linked")
}

/// The absolute paths in `ldd` output: "libc.so.6 => /lib/.../libc.so.6
/// (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
pub fn parse_ldd(text: &str) -> Vec<PathBuf> {
    if ldd_says_static(text) {
        return Vec::new();
    }
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=>").map_or(l, |(_, p)| p.trim());
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::newc::Reader;
    use std::io::Read;

    #[test]
    fn ldd_output_names_every_library_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f58)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f58)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f58)\n";
        assert_eq!(
            parse_ldd(text),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
        assert!(parse_ldd("\tstatically linked\n").is_empty());
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }

    /// Every entry, read back with the crate's own reader.
    fn read_back(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut r = bytes;
        loop {
            let mut e = Reader::new(r).unwrap();
            if e.entry().is_trailer() {
                return out;
            }
            let (name, mode, rdev) = (
                e.entry().name().to_string(),
                e.entry().mode(),
                e.entry().rdev_minor(),
            );
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            out.push((name, mode, rdev, data));
            r = e.finish().unwrap();
        }
    }

    #[test]
    fn the_guest_tree_has_init_its_libraries_devices_and_job() {
        let dir = std::env::temp_dir().join(format!("gupcheck-initramfs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (bin, lib) = (dir.join("gupcheck"), dir.join("libfake.so.1"));
        std::fs::write(&bin, b"\x7fELF-not-really").unwrap();
        std::fs::write(&lib, b"lib").unwrap();
        let ko = dir.join("ext4.ko");
        std::fs::write(&ko, b"module").unwrap();
        let t = Tree::guest(&bin, std::slice::from_ref(&lib), &[ko], b"{\"args\":[]}").unwrap();
        let mut bytes = Vec::new();
        t.write(&mut bytes).unwrap();
        let got = read_back(&bytes);
        let find = |n: &str| {
            got.iter()
                .find(|e| e.0 == n)
                .unwrap_or_else(|| panic!("no {n} in {got:?}"))
        };
        assert_eq!(find("init").3, b"\x7fELF-not-really");
        assert_eq!(find("init").1 & 0o777, 0o755);
        assert_eq!(find(JOB).3, b"{\"args\":[]}");
        assert_eq!(find(&format!("{MODULES}/00-ext4.ko")).3, b"module");
        let lib_name = lib.to_string_lossy().trim_start_matches('/').to_string();
        assert_eq!(find(&lib_name).3, b"lib");
        // Each parent directory comes before what it holds.
        let pos = |n: &str| got.iter().position(|e| e.0 == n).unwrap();
        assert!(
            pos(lib
                .parent()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches('/'))
                < pos(&lib_name)
        );
        assert_eq!(find("dev/ttyS1").2, 65);
        assert_eq!(
            find("dev/console").1 & 0o170000,
            0o020000,
            "a character device"
        );
        let e = Tree::guest(&dir.join("missing"), &[], &[], b"")
            .err()
            .unwrap();
        assert!(
            e.starts_with("cannot read ") && e.contains("missing"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
