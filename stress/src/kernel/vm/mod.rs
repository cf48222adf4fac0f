//! `--vm KERNEL_IMAGE`: `gupcheck kernel selftests` and `kernel stress` on
//! any kernel, booted under qemu. The host checks the image (`image`), packs
//! gupcheck, its libraries and the job into an initramfs (`initramfs`), boots
//! it (`qemu`: KVM when it works, emulation otherwise), and reads back what
//! the guest's init (`guest`) sent over its second serial port (`channel`):
//! the run's JSON report, judged on the host against the model preset for the
//! guest's release exactly as `--from` judges a recorded report.

pub mod channel;
#[cfg(target_os = "linux")]
pub mod guest;
pub mod image;
pub mod initramfs;
pub mod modules;
pub mod qemu;

use crate::ui::say;
use channel::Received;
use gupcheck_model::harness::artifact::write_file_atomic;
use qemu::{Accel, Boot};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The options of a `--vm` run, shared by `kernel selftests` and `kernel stress`.
#[derive(clap::Args, Clone, Debug)]
pub struct VmArgs {
    /// Boots this kernel (an x86_64 bzImage: arch/x86/boot/bzImage, or
    /// /boot/vmlinuz-* of a distribution package) under qemu and runs the
    /// command inside it; the report comes back and is judged here against
    /// the model preset for that kernel's release.
    #[arg(long, value_name = "KERNEL_IMAGE")]
    pub vm: Option<PathBuf>,
    /// The qemu binary.
    #[arg(
        id = "vm_qemu",
        long = "qemu",
        value_name = "PATH",
        default_value = "qemu-system-x86_64",
        requires = "vm"
    )]
    pub qemu: String,
    /// kvm, tcg (emulation), or auto: KVM when /dev/kvm opens, emulation if
    /// the kernel prints nothing under it within 10 s.
    #[arg(
        id = "vm_accel",
        long = "accel",
        value_enum,
        default_value = "auto",
        requires = "vm"
    )]
    pub accel: Accel,
    /// The guest's memory, as qemu's -m takes it (5G, 4096M); from 5G on,
    /// two 1 GiB huge pages are reserved at boot for the 1 GiB hugetlb rows.
    #[arg(id = "vm_memory", long = "vm-memory", value_name = "SIZE", default_value = "5G", value_parser = parse_memory, requires = "vm")]
    pub memory: String,
    #[arg(id = "vm_cpus", long = "vm-cpus", value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64), requires = "vm")]
    pub cpus: u32,
    /// How long the guest may run before qemu is stopped (default: 30m for
    /// selftests, the duration plus 15m for stress).
    #[arg(id = "vm_timeout", long = "vm-timeout", value_name = "DURATION", value_parser = crate::ui::parse_duration, requires = "vm")]
    pub timeout: Option<Duration>,
    /// Where the guest's console log and the files it sent back are written.
    #[arg(
        id = "vm_out",
        long = "vm-out",
        value_name = "DIR",
        default_value = "gupcheck-vm",
        requires = "vm"
    )]
    pub out: PathBuf,
    /// The gupcheck the guest runs (default: this one, with the shared
    /// libraries ldd lists; a static musl build needs none).
    #[arg(
        id = "vm_guest_binary",
        long = "vm-guest-binary",
        value_name = "PATH",
        requires = "vm"
    )]
    pub guest_binary: Option<PathBuf>,
    /// The image's modules tree (lib/modules/RELEASE), for the disk's
    /// virtio and ext4 drivers; default: the one beside the image's boot/.
    #[arg(
        id = "vm_modules",
        long = "vm-modules",
        value_name = "DIR",
        requires = "vm"
    )]
    pub modules: Option<PathBuf>,
    /// No ext4 disk (mkfs.ext4) and no swap device (mkswap): the files live
    /// on tmpfs and MADV_PAGEOUT cannot swap.
    #[arg(id = "vm_no_disk", long = "vm-no-disk", requires = "vm")]
    pub no_disk: bool,
}

/// MiB in a size `parse_memory` took.
pub(crate) fn mib(s: &str) -> u64 {
    let digits = s.trim_end_matches(['M', 'G', 'm', 'g']);
    let n: u64 = digits.parse().unwrap_or(0);
    match s.ends_with(['G', 'g']) {
        true => n * 1024,
        false => n,
    }
}

/// Two 1 GiB pages (a case's page and its copy on write) when the guest
/// has room for them and 2 GiB besides.
fn gigantic_pages(memory: &str) -> u32 {
    // qemu maps the RAM past 3 GiB above the 4 GiB PCI hole: below 5 GiB
    // the kernel finds only one free aligned GiB.
    if mib(memory) >= 5 * 1024 {
        2
    } else {
        0
    }
}

/// "2G", "2048M", "2048" (MiB, as qemu reads a bare number).
fn parse_memory(s: &str) -> Result<String, String> {
    let digits = s.trim_end_matches(['M', 'G', 'm', 'g']);
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && s.len() - digits.len() <= 1 => Ok(s.to_string()),
        _ => Err(format!("bad memory size '{s}' (use e.g. 2G or 4096M)")),
    }
}

/// What a guest brought back.
pub struct Outcome {
    pub received: Received,
    /// Where its files were written.
    pub dir: PathBuf,
    /// The kernel's own bug reports on the console during the run.
    pub splats: Vec<String>,
    pub console: PathBuf,
}

impl Outcome {
    /// A file the guest sent, as written on the host.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.received
            .files
            .iter()
            .any(|(n, _)| n == name)
            .then(|| self.dir.join(name))
    }

    /// The error when the run sent no report: its own last error line.
    pub fn no_report(&self) -> String {
        let console = std::fs::read_to_string(&self.console).unwrap_or_default();
        let said = console
            .lines()
            .rev()
            .find(|l| l.starts_with("gupcheck: "))
            .map_or(String::new(), |l| {
                format!(": {}", l.trim_start_matches("gupcheck: "))
            });
        format!(
            "the guest's run wrote no report (exit {}){said} (console {})",
            self.received.exit.unwrap_or(-1),
            self.console.display()
        )
    }

    /// Prints the kernel's bug reports, if any: true when there were some.
    pub fn show_splats(&self) -> bool {
        for s in &self.splats {
            say!("KERNEL {s}");
        }
        if !self.splats.is_empty() {
            say!(
                "the kernel reported {} during the run: see {}",
                crate::ui::count(self.splats.len(), "bug", "bugs"),
                self.console.display()
            );
        }
        !self.splats.is_empty()
    }
}

/// Boots `vm.vm` with gupcheck running `args` inside, to the end.
pub fn boot(vm: &VmArgs, args: Vec<String>, timeout: Duration) -> Result<Outcome, String> {
    let image_path = vm.vm.as_deref().ok_or("--vm needs a kernel image")?;
    let image = image::read(image_path)?;
    let binary = match &vm.guest_binary {
        Some(b) => b.clone(),
        None => {
            std::env::current_exe().map_err(|e| format!("cannot find this gupcheck binary: {e}"))?
        }
    };
    let libs = initramfs::libraries(&binary)?;
    std::fs::create_dir_all(&vm.out)
        .map_err(|e| format!("cannot create {}: {e}", vm.out.display()))?;
    let (initrd, console, chan) = qemu::files(&vm.out);
    // Sparse, and big enough for cow.c's io_uring case, which writes a
    // whole 1 GiB huge page to a file.
    let disk = match vm.no_disk {
        true => None,
        false => make_image(
            &vm.out.join("disk.img"),
            3 << 30,
            "mkfs.ext4",
            &["-q", "-F"],
        ),
    };
    // Swap for MADV_PAGEOUT: a raw swap device beside the disk.
    let swap = match vm.no_disk {
        true => None,
        false => make_image(&vm.out.join("swap.img"), 256 << 20, "mkswap", &["-q"]),
    };
    let images: Vec<&Path> = disk
        .iter()
        .chain(swap.iter())
        .map(PathBuf::as_path)
        .collect();
    // virtio disks are named in the order of qemu's -drive options.
    let dev = |i: usize| format!("/dev/vd{}", (b'a' + i as u8) as char);
    let tree_dir = vm
        .modules
        .clone()
        .or_else(|| modules::dir_for(image_path, &image.release));
    let mods = match tree_dir {
        Some(d) if !images.is_empty() => {
            modules::load_order(&d, &modules::WANTED).unwrap_or_else(|e| {
                say!("no modules loaded for the disk: {e}");
                Vec::new()
            })
        }
        _ => Vec::new(),
    };
    let job = Job {
        args,
        hugepages_2m: 8,
        modules: !mods.is_empty(),
        disk: disk.as_ref().map(|_| dev(0)),
        swap: swap.as_ref().map(|_| dev(images.len() - 1)),
    };
    let job = serde_json::to_vec(&job).map_err(|e| e.to_string())?;
    let tree = initramfs::Tree::guest(&binary, &libs, &mods, &job)?;
    write_initrd(&tree, &initrd)?;
    say!(
        "booting {} under {} ({} MiB initramfs); console: {}",
        image.release,
        vm.qemu,
        std::fs::metadata(&initrd).map_or(0, |m| m.len() >> 20),
        console.display()
    );
    let boot = Boot {
        qemu: &vm.qemu,
        image: image_path,
        initrd: &initrd,
        memory: &vm.memory,
        cpus: vm.cpus,
        console: &console,
        channel: &chan,
        disks: &images,
        hugepages_1g: gigantic_pages(&vm.memory),
    };
    let spin = crate::ui::bar(0, "{spinner} {elapsed} {msg}");
    let ran = qemu::run(&boot, vm.accel, timeout, |c| {
        spin.set_message(qemu::last_line(c).chars().take(90).collect::<String>());
        spin.tick();
    });
    spin.finish_and_clear();
    let _ = std::fs::remove_file(&initrd);
    for d in &images {
        let _ = std::fs::remove_file(d);
    }
    let ran = ran?;
    let text = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    let last = qemu::last_line(&text).to_string();
    let received = Received::parse(&std::fs::read(&chan).unwrap_or_default())?;
    say!(
        "the guest ran {:.0} s under {}",
        ran.secs,
        if ran.kvm { "KVM" } else { "emulation (TCG)" }
    );
    for n in &received.notes {
        say!("guest: {n}");
    }
    for (name, bytes) in &received.files {
        let path = vm.out.join(name);
        let dir = path.parent().unwrap_or(&vm.out);
        let base = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_file_atomic(dir, &base, bytes)?;
    }
    let splats = qemu::kernel_splats(&text);
    if received.release.is_none() {
        return Err(format!(
            "the guest never started gupcheck (console {}: '{last}'){}",
            console.display(),
            if ran.stderr.is_empty() {
                String::new()
            } else {
                format!("; qemu: {}", ran.stderr)
            }
        ));
    }
    if let Some(e) = &received.error {
        return Err(format!(
            "the guest could not run: {e} (console {})",
            console.display()
        ));
    }
    if ran.timed_out && received.exit.is_none() {
        return Err(format!(
            "the guest did not finish within {} s, stopped (console {}: '{last}'){}",
            timeout.as_secs(),
            console.display(),
            if splats.is_empty() {
                String::new()
            } else {
                format!("; the kernel reported: {}", splats[0])
            }
        ));
    }
    if received.exit.is_none() {
        return Err(format!(
            "the guest stopped before its run ended (console {}: '{last}')",
            console.display()
        ));
    }
    Ok(Outcome {
        received,
        dir: vm.out.clone(),
        splats,
        console,
    })
}

/// The job the host puts into the initramfs for the guest's init.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Eq)]
pub struct Job {
    /// gupcheck's arguments for the run.
    pub args: Vec<String>,
    /// 2 MiB huge pages to reserve (the hugetlb rows need some).
    pub hugepages_2m: u32,
    /// Kernel modules to load first (in the initramfs, in order).
    #[serde(default)]
    pub modules: bool,
    /// The ext4 disk's device: the run's files go there.
    #[serde(default)]
    pub disk: Option<String>,
    /// A swap device to swapon.
    #[serde(default)]
    pub swap: Option<String>,
}

/// A fresh image of `size` bytes (sparse) made by `tool` (mkfs.ext4, mkswap), or
/// None with a note when the tool is missing or fails: the guest then goes
/// without (its files on tmpfs, no swap).
fn make_image(path: &Path, size: u64, tool: &str, args: &[&str]) -> Option<PathBuf> {
    let _ = std::fs::remove_file(path);
    let made = std::fs::File::create(path)
        .and_then(|f| f.set_len(size))
        .map_err(|e| e.to_string())
        .and_then(|()| {
            std::process::Command::new(tool)
                .args(args)
                .arg(path)
                .output()
                .map_err(|e| format!("{e} (apt-get install e2fsprogs util-linux)"))
        });
    let why = match made {
        Ok(o) if o.status.success() => return Some(path.to_path_buf()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
        Err(e) => e,
    };
    let _ = std::fs::remove_file(path);
    say!("the guest goes without {}: {tool}: {why}", path.display());
    None
}

/// The archive into a temp file, then renamed: a half-written initramfs is
/// never booted.
fn write_initrd(tree: &initramfs::Tree, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let f =
        std::fs::File::create(&tmp).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let mut w = std::io::BufWriter::new(f);
    tree.write(&mut w)
        .and_then(|_| std::io::Write::flush(&mut w))
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_checked_before_qemu_sees_them() {
        for ok in ["2G", "4096M", "2048", "1g"] {
            assert_eq!(parse_memory(ok).unwrap(), ok);
        }
        for bad in ["", "0", "2GB", "lots", "-1G"] {
            assert!(
                parse_memory(bad)
                    .unwrap_err()
                    .starts_with("bad memory size"),
                "{bad}"
            );
        }
        assert_eq!((mib("4G"), mib("3072M"), mib("2048")), (4096, 3072, 2048));
        assert_eq!((gigantic_pages("5G"), gigantic_pages("4G")), (2, 0));
    }
}
