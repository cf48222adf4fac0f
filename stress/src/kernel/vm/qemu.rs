//! qemu-system-x86_64 with the kernel, the initramfs and two serial ports
//! written to files (ttyS0 the console, ttyS1 the report channel); no disk,
//! no network, no display. `-no-reboot` makes the guest's reboot (init's
//! last act, or `panic=-1` after a panic) end qemu.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when /dev/kvm opens, falling back to emulation if the kernel
    /// prints nothing under it.
    Auto,
    Kvm,
    /// Emulation (TCG): any host, a stock kernel boots in seconds.
    Tcg,
}

/// One boot.
pub struct Boot<'a> {
    pub qemu: &'a str,
    pub image: &'a Path,
    pub initrd: &'a Path,
    pub memory: &'a str,
    pub cpus: u32,
    pub console: &'a Path,
    pub channel: &'a Path,
    /// Raw disk images: the guest's /dev/vda, /dev/vdb, ...
    pub disks: &'a [&'a Path],
    /// 1 GiB huge pages reserved at boot.
    pub hugepages_1g: u32,
}

/// The kernel command line: init is gupcheck, told by the words after `--`
/// (which the kernel passes to init) to act as the guest.
pub const CMDLINE: &str = "console=ttyS0 panic=-1 rdinit=/init -- kernel vm-guest";

/// 1 GiB huge pages can only be reserved at boot (memory fragments after).
pub fn cmdline(hugepages_1g: u32) -> String {
    match hugepages_1g {
        0 => CMDLINE.to_string(),
        n => CMDLINE.replacen(
            " rdinit=",
            &format!(" hugepagesz=1G hugepages={n} rdinit="),
            1,
        ),
    }
}

impl Boot<'_> {
    pub fn args(&self, kvm: bool) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        if kvm {
            push(&["-accel", "kvm", "-cpu", "host"]);
        } else {
            push(&["-accel", "tcg", "-cpu", "max"]);
        }
        push(&["-m", self.memory, "-smp", &self.cpus.to_string()]);
        // Two NUMA nodes, half the memory and the CPUs each, so that
        // move_pages has somewhere to move a page.
        if self.cpus >= 2 {
            let half = super::mib(self.memory) / 2;
            let sizes = [half, super::mib(self.memory) - half];
            let split = self.cpus / 2;
            let cpus = [
                format!("0-{}", split - 1),
                format!("{split}-{}", self.cpus - 1),
            ];
            for (n, (size, cpus)) in sizes.iter().zip(&cpus).enumerate() {
                push(&[
                    "-object",
                    &format!("memory-backend-ram,id=m{n},size={size}M"),
                ]);
                push(&["-numa", &format!("node,nodeid={n},cpus={cpus},memdev=m{n}")]);
            }
        }
        push(&["-nodefaults", "-display", "none", "-no-reboot"]);
        push(&[
            "-kernel",
            &self.image.to_string_lossy(),
            "-initrd",
            &self.initrd.to_string_lossy(),
        ]);
        push(&["-append", &cmdline(self.hugepages_1g)]);
        for d in self.disks {
            push(&[
                "-drive",
                &format!("file={},if=virtio,format=raw", d.display()),
            ]);
        }
        for f in [self.console, self.channel] {
            push(&["-serial", &format!("file:{}", f.display())]);
        }
        a
    }

    fn spawn(&self, kvm: bool) -> Result<Child, String> {
        Command::new(self.qemu)
            .args(self.args(kvm))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({e}): install qemu (apt-get install qemu-system-x86) or name it with --qemu",
                    self.qemu
                )
            })
    }
}

/// Whether KVM can be asked for: /dev/kvm opens read-write.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// How a boot ended.
pub struct Ran {
    pub kvm: bool,
    pub secs: f64,
    /// Whether qemu was stopped at the deadline.
    pub timed_out: bool,
    /// What qemu itself printed (its errors).
    pub stderr: String,
}

/// Seconds a kernel gets to print its first console line under KVM before
/// `auto` gives up on it: a kernel prints within a second under KVM; a stock
/// kernel can hang silently under a nested hypervisor.
const KVM_FIRST_LINE: Duration = Duration::from_secs(10);

/// Runs the guest to its end or the deadline; `watch` is called about every
/// half second with the console so far (progress).
pub fn run(
    boot: &Boot,
    accel: Accel,
    timeout: Duration,
    mut watch: impl FnMut(&str),
) -> Result<Ran, String> {
    let mut kvm = match accel {
        Accel::Kvm => true,
        Accel::Tcg => false,
        Accel::Auto => kvm_usable(),
    };
    loop {
        // qemu appends to an existing file: start each boot empty.
        for f in [boot.console, boot.channel] {
            std::fs::write(f, b"").map_err(|e| format!("cannot write {}: {e}", f.display()))?;
        }
        let mut child = boot.spawn(kvm)?;
        let t0 = Instant::now();
        let mut silent_kvm = false;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break Some(s);
            }
            let console = std::fs::read(boot.console).unwrap_or_default();
            watch(&String::from_utf8_lossy(&console));
            if kvm && accel == Accel::Auto && console.is_empty() && t0.elapsed() > KVM_FIRST_LINE {
                silent_kvm = true;
                break None;
            }
            if t0.elapsed() > timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        if status.is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if silent_kvm {
            eprintln!(
                "gupcheck: the kernel printed nothing in {}s under KVM (a stock kernel may hang \
                 under a nested hypervisor): booting it again under emulation (--accel tcg)",
                KVM_FIRST_LINE.as_secs()
            );
            kvm = false;
            continue;
        }
        if let Some(s) = status {
            if !s.success() {
                return Err(format!(
                    "{} failed ({s}): {}",
                    boot.qemu,
                    first_line(&stderr)
                ));
            }
        }
        return Ok(Ran {
            kvm,
            secs: t0.elapsed().as_secs_f64(),
            timed_out: status.is_none(),
            stderr,
        });
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("no message")
}

/// The console's last non-empty line, for progress and errors.
pub fn last_line(console: &str) -> &str {
    console
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

/// The lines where the kernel reported a bug of its own: an oops, a BUG, a
/// WARNING, a panic, a lockup (what syzkaller calls a crash) once init runs.
/// Any of these during a run is a finding, whatever the run's own verdict.
pub fn kernel_splats(console: &str) -> Vec<String> {
    // Only what the run caused: a boot-time warning of the kernel's own
    // hardware probing is not the run's.
    let from = console.find("Run /init as init process").unwrap_or(0);
    const MARKS: [&str; 8] = [
        "BUG:",
        "WARNING:",
        "Oops",
        "Kernel panic",
        "general protection fault",
        "kernel BUG at",
        "watchdog: BUG: soft lockup",
        "INFO: task",
    ];
    console[from..]
        .lines()
        .filter(|l| MARKS.iter().any(|m| l.contains(m)))
        .map(|l| l.trim().to_string())
        .collect()
}

/// The files of one boot, in `dir`.
pub fn files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("initramfs.cpio"),
        dir.join("console.log"),
        dir.join("channel.bin"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_boots_the_image_with_two_serial_files() {
        let b = Boot {
            qemu: "qemu-system-x86_64",
            image: Path::new("/k/bzImage"),
            initrd: Path::new("/w/initramfs.cpio"),
            memory: "2G",
            cpus: 2,
            console: Path::new("/w/console.log"),
            channel: Path::new("/w/channel.bin"),
            disks: &[],
            hugepages_1g: 0,
        };
        let a = b.args(false).join(" ");
        assert!(
            a.starts_with("-accel tcg -cpu max -m 2G -smp 2 -object"),
            "{a}"
        );
        assert!(a.contains("-kernel /k/bzImage -initrd /w/initramfs.cpio"));
        assert!(a.contains("-object memory-backend-ram,id=m0,size=1024M -numa node,nodeid=0,cpus=0-0,memdev=m0 \
             -object memory-backend-ram,id=m1,size=1024M -numa node,nodeid=1,cpus=1-1,memdev=m1"), "{a}");
        assert!(
            a.ends_with("-serial file:/w/console.log -serial file:/w/channel.bin"),
            "{a}"
        );
        assert!(b.args(true).join(" ").starts_with("-accel kvm -cpu host"));
        assert!(
            b.args(true).contains(&CMDLINE.to_string()),
            "the command line is one argument"
        );
    }

    #[test]
    fn splats_are_the_kernels_own_bug_reports() {
        let console = "[    0.5] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/cpu/amd.c:1 boot\n\
                       [    1.0] Run /init as init process\n\
                       [    9.1] ------------[ cut here ]------------\n\
                       [    9.1] WARNING: CPU: 1 PID: 71 at mm/gup.c:123 try_grab_folio+0x1/0x2\n\
                       [    9.2] gupcheck: 120 rows\n\
                       [   12.0] BUG: Bad page state in process init  pfn:1234\n";
        let s = kernel_splats(console);
        assert_eq!(s.len(), 2);
        assert!(s[0].contains("mm/gup.c:123"));
        assert!(s[1].contains("Bad page state"));
        assert!(kernel_splats("[ 1.0] all fine\n").is_empty());
        assert_eq!(last_line(console), s[1]);
    }
}
