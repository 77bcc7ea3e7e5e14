//! The docs quote the code in places; these keep the quotes true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The `crate::<module>` paths used under `src/<module>.rs` and `src/<module>/`.
fn uses(root: &Path, module: &str) -> BTreeSet<String> {
    fn scan(path: &Path, out: &mut String) {
        if path.is_dir() {
            for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                scan(&e.path(), out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
    }
    let mut text = String::new();
    scan(&root.join(format!("src/{module}.rs")), &mut text);
    scan(&root.join(format!("src/{module}")), &mut text);
    text.match_indices("crate::")
        .map(|(i, _)| {
            text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty() && m != module)
        .collect()
}

#[test]
fn the_module_table_is_the_code_and_has_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/development.md")).expect("docs");
    let mut table: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in doc.lines().map(str::trim) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() == 5 && cells[1].starts_with('`') {
            let module = cells[1].trim_matches('`').to_string();
            let used = cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_string())
                .filter(|c| !c.is_empty() && c != "–")
                .collect();
            table.insert(module, used);
        }
    }
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("lib.rs");
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or_else(|| l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    assert_eq!(
        table.keys().cloned().collect::<BTreeSet<_>>(),
        modules,
        "docs/development.md lists every module of src/lib.rs"
    );
    for m in &modules {
        assert_eq!(
            table[m],
            uses(root, m),
            "docs/development.md: what `{m}` uses"
        );
    }
    // No cycle: repeatedly remove modules that use nothing left.
    let mut left = table.clone();
    while !left.is_empty() {
        let free: Vec<String> = left
            .iter()
            .filter(|(_, used)| used.iter().all(|u| !left.contains_key(u)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(!free.is_empty(), "an import cycle among {:?}", left.keys());
        for m in free {
            left.remove(&m);
        }
    }
}

/// src/lib.rs's doc is the map of the crate a new contributor reads first: every top-level
/// module is named in it.
#[test]
fn the_crate_doc_names_every_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).expect("src/lib.rs");
    let doc: String = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(
        modules.len() > 10,
        "modules found in src/lib.rs: {modules:?}"
    );
    let missing: Vec<&&str> = modules
        .iter()
        .filter(|m| !doc.contains(&format!("[`{m}`]")))
        .collect();
    assert!(
        missing.is_empty(),
        "src/lib.rs's doc does not name {missing:?}"
    );
}
