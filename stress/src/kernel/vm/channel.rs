//! What the guest sends back on its second serial port (ttyS1, raw mode; the
//! kernel's own messages go to ttyS0): a start line with its `uname -r`, the
//! files its run wrote (the JSON report, op logs), and its exit code. Framed
//! by lengths, so a file's bytes need no escaping; the host reads what qemu
//! wrote to a file once the guest is gone.

/// One line: `GUPCHECK-VM start RELEASE`, `GUPCHECK-VM file NAME LEN` (then
/// LEN bytes and a newline), `GUPCHECK-VM note MSG`, `GUPCHECK-VM exit CODE`,
/// `GUPCHECK-VM error MSG`.
const TAG: &str = "GUPCHECK-VM";

pub fn start(release: &str) -> Vec<u8> {
    format!("{TAG} start {release}\n").into_bytes()
}

pub fn file(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{TAG} file {name} {}\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.push(b'\n');
    out
}

pub fn exit(code: i32) -> Vec<u8> {
    format!("{TAG} exit {code}\n").into_bytes()
}

/// What the guest tells the user (where its files live, a module refused).
pub fn note(msg: &str) -> Vec<u8> {
    format!("{TAG} note {}\n", msg.replace('\n', " ")).into_bytes()
}

pub fn error(msg: &str) -> Vec<u8> {
    format!("{TAG} error {}\n", msg.replace('\n', " ")).into_bytes()
}

/// What the host read of a guest's run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The guest's `uname -r`: it booted and its init ran.
    pub release: Option<String>,
    pub files: Vec<(String, Vec<u8>)>,
    pub exit: Option<i32>,
    /// Why the guest could not run the command.
    pub error: Option<String>,
    pub notes: Vec<String>,
}

impl Received {
    /// Reads the channel so far; an incomplete tail (the guest still
    /// running, or killed) is left unread, a garbled frame is an error.
    pub fn parse(mut bytes: &[u8]) -> Result<Received, String> {
        let mut r = Received::default();
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&bytes[..nl]).into_owned();
            let rest = &bytes[nl + 1..];
            let Some(body) = line.strip_prefix(TAG).map(str::trim_start) else {
                // Nothing but frames is written here; a stray line would
                // mean the port is shared.
                return Err(format!(
                    "the guest's report channel has a stray line '{line}'"
                ));
            };
            let (word, arg) = body.split_once(' ').unwrap_or((body, ""));
            bytes = rest;
            match word {
                "start" => r.release = Some(arg.to_string()),
                "exit" => {
                    r.exit = Some(arg.parse().map_err(|_| format!("bad exit line '{line}'"))?)
                }
                "error" => r.error = Some(arg.to_string()),
                "note" => r.notes.push(arg.to_string()),
                "file" => {
                    let (name, len) = arg
                        .rsplit_once(' ')
                        .and_then(|(n, l)| Some((n, l.parse::<usize>().ok()?)))
                        .ok_or_else(|| format!("bad file line '{line}'"))?;
                    if name.is_empty()
                        || name.starts_with('/')
                        || name.split('/').any(|c| c == "..")
                    {
                        return Err(format!(
                            "the guest sent a file with an unsafe name '{name}'"
                        ));
                    }
                    if rest.len() < len + 1 {
                        break; // cut short: the guest did not finish sending
                    }
                    if rest[len] != b'\n' {
                        return Err(format!("the guest's file {name} is not {len} bytes long"));
                    }
                    r.files.push((name.to_string(), rest[..len].to_vec()));
                    bytes = &rest[len + 1..];
                }
                _ => {
                    return Err(format!(
                        "the guest's report channel has an unknown line '{line}'"
                    ))
                }
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_run_reads_back() {
        let report = b"{\n  \"rows\": []\n}\n";
        let mut wire = start("6.1.0-50-amd64");
        wire.extend(note("files on ext4 (/dev/vda)"));
        wire.extend(file("report.json", report));
        wire.extend(file("oplog/worker-0.log", b"no newline at the end"));
        wire.extend(exit(1));
        let r = Received::parse(&wire).unwrap();
        assert_eq!(r.release.as_deref(), Some("6.1.0-50-amd64"));
        assert_eq!(r.files.len(), 2);
        assert_eq!(r.files[0], ("report.json".to_string(), report.to_vec()));
        assert_eq!(r.files[1].0, "oplog/worker-0.log");
        assert_eq!(r.exit, Some(1));
        assert_eq!(r.error, None);
        assert_eq!(r.notes, ["files on ext4 (/dev/vda)"]);
    }

    #[test]
    fn a_cut_short_run_has_no_exit_and_no_partial_file() {
        let mut wire = start("6.12.0");
        let f = file("report.json", b"0123456789");
        wire.extend(&f[..f.len() - 4]);
        let r = Received::parse(&wire).unwrap();
        assert_eq!(r.release.as_deref(), Some("6.12.0"));
        assert!(r.files.is_empty());
        assert_eq!(r.exit, None);
    }

    #[test]
    fn garbled_or_unsafe_frames_are_errors() {
        let mut wire = file("report.json", b"12345");
        let n = wire.len();
        wire[n - 1] = b'x';
        wire.extend(b"\n");
        assert!(Received::parse(&wire)
            .unwrap_err()
            .contains("not 5 bytes long"));
        assert!(Received::parse(&file("../etc/passwd", b"x"))
            .unwrap_err()
            .contains("unsafe name"));
        assert!(Received::parse(b"[ 1.0] console noise\n")
            .unwrap_err()
            .contains("stray line"));
        let r = Received::parse(&error("no /dev/ttyS1:\nENOENT")).unwrap();
        assert_eq!(r.error.as_deref(), Some("no /dev/ttyS1: ENOENT"));
    }
}
