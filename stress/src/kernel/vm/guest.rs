//! The guest's init: gupcheck as PID 1 in the initramfs. It mounts what the
//! cases read (proc, sysfs, devtmpfs, debugfs for gup_test, a tmpfs for
//! files), reserves 2 MiB huge pages, runs the job (gupcheck itself, as a
//! child, so a crash of the run is reported, not a kernel panic), sends the
//! files it wrote and its exit code over ttyS1, and reboots, which ends qemu.

use super::channel;
use super::initramfs::{JOB, MODULES, OUT};
use super::Job;
use nix::mount::{mount, MsFlags};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// Runs as init; never returns.
pub fn main() -> ! {
    let mut chan = match open_channel() {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("gupcheck guest: {e}");
            None
        }
    };
    let mut send = |bytes: Vec<u8>| {
        if let Some(c) = chan.as_mut() {
            let _ = c.write_all(&bytes).and_then(|_| c.flush());
        }
    };
    match run(&mut send) {
        Ok(code) => send(channel::exit(code)),
        Err(e) => {
            eprintln!("gupcheck guest: {e}");
            send(channel::error(&e));
        }
    }
    nix::unistd::sync();
    // qemu runs with -no-reboot: a restart ends it.
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    std::process::exit(1)
}

fn run(send: &mut impl FnMut(Vec<u8>)) -> Result<i32, String> {
    mounts()?;
    let release = super::super::release()?;
    send(channel::start(&release));
    let text = std::fs::read_to_string(Path::new("/").join(JOB))
        .map_err(|e| format!("cannot read /{JOB}: {e}"))?;
    let job: Job = serde_json::from_str(&text).map_err(|e| format!("/{JOB}: {e}"))?;
    if job.hugepages_2m > 0 {
        // Absent without CONFIG_HUGETLBFS: the hugetlb rows then skip.
        let _ = std::fs::write(
            "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
            job.hugepages_2m.to_string(),
        );
    }
    // ksmd is stopped at boot; in a machine of its own the KSM breaker
    // should merge (absent without CONFIG_KSM).
    let _ = std::fs::write("/sys/kernel/mm/ksm/run", "1");
    if job.modules {
        load_modules(send);
    }
    let dir = match &job.disk {
        Some(dev) => mount_disk(dev).unwrap_or_else(|e| {
            send(channel::note(&format!(
                "{e}: the files live on tmpfs (/tmp)"
            )));
            "/tmp".into()
        }),
        None => "/tmp".into(),
    };
    if dir != "/tmp" {
        send(channel::note(&format!(
            "the files live on ext4 ({} at {dir})",
            job.disk.as_deref().unwrap_or("")
        )));
    }
    if let Some(dev) = &job.swap {
        send(channel::note(&match swap_on(dev) {
            Ok(()) => format!("swap on {dev}"),
            Err(e) => format!("{e}: no swap"),
        }));
    }
    let mut args = job.args.clone();
    args.extend(["--dir".to_string(), dir]);
    eprintln!("gupcheck guest: {release}: gupcheck {}", args.join(" "));
    let child = Command::new("/init")
        .args(&args)
        .spawn()
        .map_err(|e| format!("cannot start the run: {e}"))?;
    let code = reap_until(Pid::from_raw(child.id() as i32))?;
    let mut files = Vec::new();
    collect(Path::new(OUT), "", &mut files);
    for (name, bytes) in files {
        send(channel::file(&name, &bytes));
    }
    Ok(code)
}

const DISK_AT: &str = "/mnt/disk";

/// finit_module of each module in the initramfs, in order; one already
/// there (EEXIST) is fine, another refusal is told and the rest go on.
fn load_modules(send: &mut impl FnMut(Vec<u8>)) {
    let Ok(rd) = std::fs::read_dir(Path::new("/").join(MODULES)) else {
        return;
    };
    let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        let loaded = File::open(&f).map_err(|e| e.to_string()).and_then(|fd| {
            nix::kmod::finit_module(&fd, c"", nix::kmod::ModuleInitFlags::empty())
                .map_err(|e| e.to_string())
        });
        match loaded {
            Ok(()) => {}
            Err(e) if e.contains("EEXIST") => {}
            Err(e) => send(channel::note(&format!("module {}: {e}", f.display()))),
        }
    }
}

/// A virtio disk's device, once it has appeared (virtio probes
/// asynchronously).
fn wait_for(dev: &str) -> Result<(), String> {
    // A kernel without the driver would only make the wait longer.
    if !Path::new("/sys/bus/virtio/drivers/virtio_blk").exists() {
        return Err("no virtio_blk driver in this kernel".into());
    }
    let t0 = std::time::Instant::now();
    while !Path::new(dev).exists() {
        if t0.elapsed() > std::time::Duration::from_secs(20) {
            return Err(format!("no {dev} after 20 s"));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// Mounts the ext4 disk.
fn mount_disk(dev: &str) -> Result<String, String> {
    wait_for(dev)?;
    let _ = std::fs::create_dir_all(DISK_AT);
    mount(
        Some(dev),
        DISK_AT,
        Some("ext4"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| format!("cannot mount {dev} as ext4: {e}"))?;
    Ok(DISK_AT.into())
}

/// swapon(2) of the swap device mkswap prepared on the host.
fn swap_on(dev: &str) -> Result<(), String> {
    wait_for(dev)?;
    let path = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
    // SAFETY: a NUL-terminated path; no memory is handed over.
    match unsafe { libc::swapon(path.as_ptr(), 0) } {
        0 => Ok(()),
        _ => Err(format!("swapon {dev}: {}", std::io::Error::last_os_error())),
    }
}

/// Waits for the run; as PID 1 it also reaps the orphans the run's forks leave.
fn reap_until(run: Pid) -> Result<i32, String> {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == run => return Ok(code),
            Ok(WaitStatus::Signaled(p, sig, _)) if p == run => {
                return Err(format!("the run was killed by {sig}"));
            }
            Ok(_) => {}
            Err(e) => return Err(format!("waitpid: {e}")),
        }
    }
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        if e.path().is_dir() {
            collect(&e.path(), &format!("{name}/"), out);
        } else if let Ok(b) = std::fs::read(e.path()) {
            out.push((name, b));
        }
    }
}

fn mounts() -> Result<(), String> {
    let m = |src: &str, at: &str, fs: &str, must: bool| -> Result<(), String> {
        let _ = std::fs::create_dir_all(at);
        match mount(Some(src), at, Some(fs), MsFlags::empty(), None::<&str>) {
            Err(e) if must => Err(format!("cannot mount {fs} on {at}: {e}")),
            _ => Ok(()),
        }
    };
    m("proc", "/proc", "proc", true)?;
    m("sysfs", "/sys", "sysfs", true)?;
    // The initramfs has the few nodes init needs; devtmpfs has the rest.
    m("devtmpfs", "/dev", "devtmpfs", false)?;
    // gup_test lives in debugfs (CONFIG_GUP_TEST).
    m("debugfs", "/sys/kernel/debug", "debugfs", false)?;
    m("tmpfs", "/tmp", "tmpfs", true)?;
    Ok(())
}

/// ttyS1 in raw mode: the file bytes pass untranslated (no \n -> \r\n).
fn open_channel() -> Result<File, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/ttyS1")
        .map_err(|e| format!("cannot open the report channel /dev/ttyS1: {e}"))?;
    let mut t = termios::tcgetattr(&f).map_err(|e| format!("tcgetattr ttyS1: {e}"))?;
    termios::cfmakeraw(&mut t);
    termios::tcsetattr(&f, termios::SetArg::TCSANOW, &t)
        .map_err(|e| format!("tcsetattr ttyS1: {e}"))?;
    Ok(f)
}
