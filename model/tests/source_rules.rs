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

/// The model's floors, bottom up (DESIGN "Layout"): the vocabulary at the root,
/// then the machine's state, the kernel's operations, GUP, and the harness.
fn floor(module: &str) -> usize {
    match module.split("::").next().unwrap_or("") {
        "state" => 1,
        "mm" => 2,
        "gup" => 3,
        "harness" => 4,
        _ => 0,
    }
}

/// Every source file as (module path, code without its test module).
fn modules() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap().with_extension("");
                let rel = rel.to_string_lossy().replace('/', "::");
                let module = rel.trim_end_matches("::mod").to_string();
                let text = std::fs::read_to_string(&p).unwrap();
                // Unit tests may reach anywhere; the floors are about the model.
                let code = match text.find("#[cfg(test)]\nmod tests") {
                    Some(i) => text[..i].to_string(),
                    None => text,
                };
                let code: Vec<&str> = code
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                out.push((module, code.join("\n")));
            }
        }
    }
    out.sort();
    assert!(out.len() > 30, "model sources not found");
    out
}

/// The modules a file names through `crate::` (or `super::`) paths, resolved to
/// the longest module path that exists.
fn imports(module: &str, code: &str, known: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    for (prefix, base) in [("crate::", ""), ("super::", parent)] {
        for (i, _) in code.match_indices(prefix) {
            // `$crate::` in a macro, `super::*` of an inline module: the file itself.
            if code[..i].ends_with('$') || (prefix == "super::" && parent.is_empty()) {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            let path: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let full = if base.is_empty() {
                path
            } else {
                format!("{base}::{path}")
            };
            let mut parts: Vec<&str> = full.split("::").filter(|p| !p.is_empty()).collect();
            while !parts.is_empty() && !known.contains(&parts.join("::")) {
                parts.pop();
            }
            let target = if parts.is_empty() {
                "lib".to_string() // a root re-export
            } else {
                parts.join("::")
            };
            if target != module && !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out
}

#[test]
fn layers_only_look_down() {
    let mods = modules();
    let known: Vec<String> = mods.iter().map(|(m, _)| m.clone()).collect();
    let mut graph: Vec<(String, Vec<String>)> = Vec::new();
    let mut up = Vec::new();
    for (m, code) in &mods {
        if m == "lib" {
            continue;
        }
        let deps = imports(m, code, &known);
        for d in &deps {
            if d == "lib" {
                up.push(format!(
                    "{m} -> a crate-root re-export (name the defining module)"
                ));
            } else if floor(d) > floor(m) {
                up.push(format!("{m} -> {d}"));
            }
        }
        graph.push((m.clone(), deps));
    }
    assert!(up.is_empty(), "imports that look up a floor: {up:#?}");

    // No cycle among files either, within a floor included: depth-first search
    // with colours over the import graph.
    fn visit<'a>(
        m: &'a str,
        graph: &'a [(String, Vec<String>)],
        colour: &mut Vec<(&'a str, u8)>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match colour.iter().find(|(n, _)| *n == m).map(|c| c.1) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| *s == m).unwrap();
                return Some(stack[at..].iter().map(|s| s.to_string()).collect());
            }
            _ => {}
        }
        colour.push((m, 1));
        stack.push(m);
        let deps = graph.iter().find(|(n, _)| n == m).map(|g| &g.1);
        for d in deps.into_iter().flatten() {
            if let Some(c) = visit(d, graph, colour, stack) {
                return Some(c);
            }
        }
        stack.pop();
        colour.retain(|(n, _)| *n != m);
        colour.push((m, 2));
        None
    }
    let mut colour = Vec::new();
    for (m, _) in &graph {
        if let Some(cycle) = visit(m, &graph, &mut colour, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// Method calls need no `use`, so the floors are checked on them too: a file
/// never calls a `World` method that only a higher floor defines.
#[test]
fn world_methods_are_called_from_above_only() {
    let mods = modules();
    // (method, lowest floor defining it) for every method of an `impl World`.
    let mut defined: Vec<(String, usize)> = Vec::new();
    for (m, code) in &mods {
        let mut rest = code.as_str();
        while let Some(i) = rest.find("impl<B: Backend> World<B> {") {
            let body = &rest[i..];
            let mut depth = 0usize;
            let mut end = body.len();
            for (k, ch) in body.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            for (j, _) in body[..end].match_indices("fn ") {
                let name: String = body[j + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                match defined.iter_mut().find(|(n, _)| *n == name) {
                    Some(d) => d.1 = d.1.min(floor(m)),
                    None => defined.push((name, floor(m))),
                }
            }
            rest = &body[end..];
        }
    }
    assert!(defined.len() > 100, "World's methods not found");
    let mut bad = Vec::new();
    for (m, code) in &mods {
        for (name, f) in &defined {
            let call = format!("self.{name}(");
            if *f > floor(m) && code.contains(&call) {
                bad.push(format!("{m} calls {name} (floor {f})"));
            }
        }
    }
    assert!(bad.is_empty(), "calls that look up a floor: {bad:#?}");
}
