//! Rules the model's source must keep (DESIGN decisions 1 and 4): no std
//! HashMap/HashSet (loom aborts on nondeterministic iteration order), and no
//! backend yield used as a step marker (loom loses interleavings after a yield and
//! shuttle's PCT demotes yielding tasks). A yield is allowed only inside a real
//! retry loop, marked on its line with `// retry loop`.

use std::path::Path;

fn code_lines() -> Vec<(String, usize, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
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
