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
    /// The guest's memory, as qemu's -m takes it (2G, 4096M).
    #[arg(id = "vm_memory", long = "vm-memory", value_name = "SIZE", default_value = "2G", value_parser = parse_memory, requires = "vm")]
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
    /// No ext4 disk (made with mkfs.ext4): the files live on tmpfs.
    #[arg(id = "vm_no_disk", long = "vm-no-disk", requires = "vm")]
    pub no_disk: bool,
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
    let disk = match vm.no_disk {
        true => None,
        false => make_disk(&vm.out.join("disk.img")),
    };
    let tree_dir = vm
        .modules
        .clone()
        .or_else(|| modules::dir_for(image_path, &image.release));
    let mods = match tree_dir {
        Some(d) if disk.is_some() => {
            modules::load_order(&d, &modules::WANTED).unwrap_or_else(|e| {
                say!("no modules loaded for the disk: {e}");
                Vec::new()
            })
        }
        _ => Vec::new(),
    };
    let job = Job {
        args,
        hugepages_2m: 4,
        modules: !mods.is_empty(),
        disk: disk.is_some(),
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
        disk: disk.as_deref(),
    };
    let spin = crate::ui::bar(0, "{spinner} {elapsed} {msg}");
    let ran = qemu::run(&boot, vm.accel, timeout, |c| {
        spin.set_message(qemu::last_line(c).chars().take(90).collect::<String>());
        spin.tick();
    });
    spin.finish_and_clear();
    let _ = std::fs::remove_file(&initrd);
    if let Some(d) = &disk {
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
    /// An ext4 disk is attached (/dev/vda): the run's files go there.
    #[serde(default)]
    pub disk: bool,
}

/// A fresh 256 MiB ext4 image (sparse), or None with a note when
/// mkfs.ext4 is missing or fails: the guest then keeps its files on tmpfs.
fn make_disk(path: &Path) -> Option<PathBuf> {
    let _ = std::fs::remove_file(path);
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(path)
        .arg("256M")
        .output();
    match made {
        Ok(o) if o.status.success() => Some(path.to_path_buf()),
        Ok(o) => {
            say!(
                "no disk for the guest: mkfs.ext4: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            say!(
                "no disk for the guest: mkfs.ext4: {e} (apt-get install e2fsprogs); files on tmpfs"
            );
            None
        }
    }
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
    }
}
