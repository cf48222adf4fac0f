//! Rules the model's source must keep (DESIGN decisions 1 and 4): no std
//! HashMap/HashSet (loom aborts on nondeterministic iteration order), and no
//! backend yield used as a step marker (loom loses interleavings after a yield and
//! shuttle's PCT demotes yielding tasks). A yield is allowed only inside a real
//! retry loop, marked on its line with `// retry loop`.

use std::path::Path;

fn code_lines() -> Vec<(String, usize, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("//") {
                continue;
            }
            out.push((name.clone(), i + 1, line.to_string()));
        }
    }
    assert!(out.len() > 1000, "model sources not found");
    out
}

#[test]
fn no_std_hash_collections_in_model_code() {
    let bad: Vec<_> = code_lines()
        .into_iter()
        .filter(|(_, _, l)| l.contains("HashMap") || l.contains("HashSet"))
        .collect();
    assert!(bad.is_empty(), "hash collections in model code: {bad:?}");
}

#[test]
fn no_yield_as_a_step_marker() {
    let bad: Vec<_> = code_lines()
        .into_iter()
        .filter(|(f, _, l)| {
            f != "backend.rs" && l.contains("yield_now") && !l.contains("// retry loop")
        })
        .collect();
    assert!(bad.is_empty(), "yield outside a retry loop: {bad:?}");
}
