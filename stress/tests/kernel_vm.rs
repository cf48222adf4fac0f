//! `gupcheck kernel selftests --vm` and `kernel stress --vm`. Without qemu:
//! the one-line errors, and the host's whole path (initramfs, command line,
//! the report channel, re-judging, kernel splats) against a stand-in qemu
//! that answers as a guest would, with a report recorded by a real boot of
//! Debian's 6.1 kernel (kernel-6.1-vm.json). With qemu, the ignored tests
//! boot that kernel for real (fetched with apt-get download, unpacked with
//! dpkg -x): `cargo test --release -p gupcheck --test kernel_vm -- --ignored`.

mod common;

use common::gupcheck;
use std::path::{Path, PathBuf};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file with a bzImage setup header whose version names `release`.
fn fake_image(dir: &Path, release: &str) -> PathBuf {
    let mut b = vec![0u8; 0x400];
    b[0x202..0x206].copy_from_slice(b"HdrS");
    b[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    let v = format!("{release} (builder@host) #1 SMP");
    b[0x300..0x300 + v.len()].copy_from_slice(v.as_bytes());
    let p = dir.join("bzImage");
    std::fs::write(&p, b).unwrap();
    p
}

/// A stand-in qemu: writes `console` to the first serial file and, on the
/// second, the frames a guest sends: start, report.json (`report`), exit.
fn fake_qemu(dir: &Path, console: &str, report: &Path, exit: i32) -> PathBuf {
    let script = format!(
        r#"#!/bin/sh
set -e
serial=""
for a in "$@"; do case "$a" in file:*) serial="$serial ${{a#file:}}";; esac; done
set -- $serial
printf '%s\n' '{console}' > "$1"
len=$(wc -c < '{report}')
{{ echo "GUPCHECK-VM start 6.1.0-50-amd64"; echo "GUPCHECK-VM file report.json $len"; cat '{report}'; echo; echo "GUPCHECK-VM exit {exit}"; }} > "$2"
"#,
        report = report.display()
    );
    let p = dir.join("qemu");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn recorded() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernel-6.1-vm.json")
}

fn vm_selftests(dir: &Path, qemu: &Path, extra: &[&str]) -> (i32, String, String) {
    let image = fake_image(dir, "6.1.0-50-amd64");
    let out = dir.join("out");
    let mut args = vec!["kernel", "selftests", "--accel", "tcg"];
    let (i, q, o) = (
        image.to_str().unwrap(),
        qemu.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    args.extend(["--vm", i, "--qemu", q, "--vm-out", o]);
    args.extend_from_slice(extra);
    gupcheck(&args)
}

#[test]
fn the_guests_report_is_judged_against_the_images_preset() {
    let dir = scratch("vm-judged");
    let qemu = fake_qemu(&dir, "[    3.1] Run /init as init process", &recorded(), 0);
    let (code, out, err) = vm_selftests(&dir, &qemu, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("booting 6.1.0-50-amd64 under"), "{out}");
    assert!(
        out.contains("| real (6.1.0-50-amd64) | model (6.1) |"),
        "{out}"
    );
    assert!(
        out.contains("41 agree, 0 disagree, 0 error, 58 skipped, 21 not modelled"),
        "{out}"
    );
    // On its ext4 disk, 6.1's io_uring refuses a file-backed buffer by a
    // rule of its own, which is no answer about GUP: a skip, not a verdict.
    assert!(
        out.contains("| gup_longterm | R/W longterm fast pin, MAP_PRIVATE | ext4-like (buffer heads) | skip: io_uring refused the ext4 file by its own rule before 6.4"),
        "{out}"
    );
    // What the guest sent is kept, and the initramfs is not.
    let kept = std::fs::read(dir.join("out/report.json")).unwrap();
    assert_eq!(kept, std::fs::read(recorded()).unwrap());
    assert!(dir.join("out/console.log").exists());
    assert!(!dir.join("out/initramfs.cpio").exists());
    // Judged against another preset, the same report disagrees.
    let (code, out, _) = vm_selftests(&dir, &qemu, &["--preset", "5.10"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DISAGREE"), "{out}");
}

#[test]
fn a_kernel_warning_during_the_run_is_a_finding() {
    let dir = scratch("vm-splat");
    let console =
        "[    0.2] WARNING: CPU: 0 PID: 0 at arch/x86/kernel/boot.c:1 at boot, not ours\n\
                   [    3.1] Run /init as init process\n\
                   [    9.9] WARNING: CPU: 1 PID: 77 at mm/gup.c:2310 try_grab_folio+0x1/0x2";
    let qemu = fake_qemu(&dir, console, &recorded(), 0);
    let (code, out, err) = vm_selftests(&dir, &qemu, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("KERNEL [    9.9] WARNING: CPU: 1 PID: 77 at mm/gup.c:2310"),
        "{out}"
    );
    assert!(
        !out.contains("arch/x86/kernel/boot.c"),
        "a boot-time warning is not the run's: {out}"
    );
    assert!(
        out.contains("41 agree, 0 disagree"),
        "the table is still printed: {out}"
    );
}

#[test]
fn a_guest_that_never_starts_is_a_one_line_error_naming_the_console() {
    let dir = scratch("vm-panic");
    let qemu = dir.join("qemu");
    let script = "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in file:*) f=\"${a#file:}\"; \
                  [ -n \"$c\" ] || c=\"$f\";; esac; done\n\
                  echo '[ 1.0] Kernel panic - not syncing: No working init found.' > \"$c\"\n";
    std::fs::write(&qemu, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = vm_selftests(&dir, &qemu, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.starts_with("gupcheck: the guest never started gupcheck (console "),
        "{err}"
    );
    assert!(
        err.contains("Kernel panic - not syncing: No working init found."),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn bad_input_is_a_one_line_error_before_any_boot() {
    let dir = scratch("vm-bad");
    let image = fake_image(&dir, "6.1.0");
    let img = image.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["kernel", "selftests", "--vm", "/nonexistent/bzImage"],
            "cannot read kernel image /nonexistent/bzImage",
        ),
        (
            &["kernel", "selftests", "--vm", env!("CARGO_MANIFEST_PATH")],
            "not an x86 bzImage",
        ),
        (
            &["kernel", "selftests", "--vm", img, "--case", "A99"],
            "unknown case 'A99'",
        ),
        (
            &[
                "kernel",
                "selftests",
                "--vm",
                img,
                "--qemu",
                "/nonexistent/qemu",
            ],
            "cannot run /nonexistent/qemu",
        ),
        (
            &["kernel", "stress", "--vm", img, "--vm-memory", "lots"],
            "bad memory size 'lots'",
        ),
        (&["kernel", "vm-guest"], "runs only as PID 1"),
    ];
    for (args, want) in cases {
        let (code, out, err) = gupcheck(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        if !want.starts_with("bad memory") {
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        }
    }
    let (code, _, err) = gupcheck(&["kernel", "stress", "--vm", img, "--from", "r.json"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
}

/// Debian's 6.1 kernel image, fetched and unpacked into the target
/// directory once; `Err` says why it is not there.
fn debian_kernel() -> Result<PathBuf, String> {
    let which = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !which("qemu-system-x86_64") {
        return Err("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into());
    }
    if !which("apt-get") || !which("dpkg") {
        return Err("no apt-get/dpkg to fetch Debian's kernel package".into());
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-kernel");
    let find = || {
        std::fs::read_dir(dir.join("x/boot"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-6.1"))
            })
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    std::fs::create_dir_all(&dir).unwrap();
    // linux-image-amd64 is the metapackage; the image is what it depends on.
    let sh = |cmd: &str| {
        let o = std::process::Command::new("sh")
            .args(["-c", cmd])
            .current_dir(&dir)
            .output()
            .map_err(|e| e.to_string())?;
        match o.status.success() {
            true => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
            false => Err(format!(
                "{cmd}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
        }
    };
    let deps = sh("apt-cache depends linux-image-amd64")?;
    let pkg = deps
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-6.1"))
        .map(|rest| format!("linux-image-6.1{rest}"))
        .ok_or("linux-image-amd64 does not depend on a 6.1 image here (not bookworm?)")?;
    sh(&format!(
        "apt-get download {pkg} && dpkg -x {pkg}_*.deb x && rm -f {pkg}_*.deb"
    ))?;
    find().ok_or_else(|| format!("{pkg} has no /boot/vmlinuz-6.1*"))
}

#[test]
#[ignore = "boots Debian's 6.1 kernel under qemu: about a minute, needs apt-get"]
fn debian_6_1_under_qemu_gives_the_table_for_preset_6_1() {
    let image = match debian_kernel() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let dir = scratch("vm-debian");
    let out = dir.join("out");
    let (i, o) = (image.to_str().unwrap(), out.to_str().unwrap());
    let (code, stdout, err) = gupcheck(&[
        "kernel",
        "selftests",
        "--vm",
        i,
        "--vm-out",
        o,
        "--accel",
        "tcg",
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("| model (6.1) |"), "{stdout}");
    assert!(stdout.contains(", 0 disagree, 0 error,"), "{stdout}");
    assert!(
        stdout.contains("| cow | A1 Basic COW after fork() | PMD-mapped THP | pass | pass | yes |"),
        "{stdout}"
    );
    let (code, stdout, err) = gupcheck(&[
        "kernel",
        "stress",
        "--vm",
        i,
        "--vm-out",
        o,
        "--accel",
        "tcg",
        "--duration",
        "20s",
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("balanced"), "{stdout}");
}
