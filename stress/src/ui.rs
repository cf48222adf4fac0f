//! What a user sees and types: stdout that survives a closed pipe, counts in
//! words, short times, durations, a progress bar, and Ctrl-C as a flag.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Once;
use std::time::Duration;

/// println! that does not panic when stdout is closed (`gupcheck list | head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
pub(crate) use say;

/// "1 entry", "2 entries".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "12ms", "3.4s".
pub fn secs_short(s: f64) -> String {
    if s < 0.1 {
        format!("{:.0}ms", (s * 1000.0).max(1.0))
    } else {
        format!("{s:.1}s")
    }
}

/// "90s", "10m", "1h", "500ms"; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration '{s}' (use e.g. 30s, 10m, 1h)");
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(bad());
    }
    // A month is beyond any run; past it, deadlines would overflow.
    const MAX_SECS: f64 = 30.0 * 24.0 * 3600.0;
    if secs > MAX_SECS {
        return Err(format!("duration '{s}' is longer than 30 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A progress bar on stderr, hidden without a terminal (CI logs get the
/// commands' own occasional lines instead). `template` is indicatif's.
pub fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar
}

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Set once Ctrl-C is pressed. The first call installs the handler: from then
/// on Ctrl-C asks the running command to finish what it has and write it,
/// instead of ending the process. A process has one handler, so every command
/// (the campaign's stress run too) shares this flag.
pub fn ctrl_c() -> &'static AtomicBool {
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| STOP.store(true, SeqCst));
    });
    &STOP
}
