//! Compiles the site (wasm, its JS glue, styles, static files) into the binary when
//! `OPSIGHT_EMBED_SITE` names its folder at build time (`.ci/build` does), so deploying
//! is copying one file. Without it the table is empty and the site is served from
//! `LEPTOS_SITE_ROOT` on disk, as the tests' builds do.
//!
//! Writes `$OUT_DIR/site.rs`: `SITE: &[SiteFile]`, each file's URL path, its bytes
//! (`include_bytes!`) and an ETag (FNV-1a of the bytes, for `If-None-Match`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=OPSIGHT_EMBED_SITE");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut table = String::from("&[\n");
    let site = std::env::var_os("OPSIGHT_EMBED_SITE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    if let Some(root) = site.as_ref().filter(|r| !r.is_dir()) {
        // Not built yet (a bench or test run before `.ci/build`): nothing to embed; watch
        // the nearest folder above that exists, so the site's arrival is noticed without
        // rerunning each time.
        println!(
            "cargo:warning=OPSIGHT_EMBED_SITE {} does not exist yet: the binary serves LEPTOS_SITE_ROOT",
            root.display()
        );
        if let Some(existing) = root.ancestors().find(|a| a.is_dir()) {
            println!("cargo:rerun-if-changed={}", existing.display());
        }
    }
    if let Some(root) = site.filter(|r| r.is_dir()) {
        println!("cargo:rerun-if-changed={}", root.display());
        let mut files = Vec::new();
        collect(&root, &root, &mut files);
        files.sort();
        for (url, path) in files {
            println!("cargo:rerun-if-changed={}", path.display());
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let etag = fnv1a(&bytes);
            writeln!(
                table,
                "    SiteFile {{ path: {url:?}, etag: \"\\\"{etag:016x}\\\"\", bytes: include_bytes!({:?}) }},",
                path.display().to_string()
            )
            .expect("writing to a String");
        }
    }
    table.push(']');
    std::fs::write(
        out.join("site.rs"),
        format!("/// The site compiled in (empty when built without `OPSIGHT_EMBED_SITE`).\npub static SITE: &[SiteFile] = {table};\n"),
    )
    .expect("cannot write site.rs");
}

/// Every file under `dir`, with its URL path from `root` (`/pkg/opsight.js`). Hidden
/// files (the build's stamp) are left out.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("OPSIGHT_EMBED_SITE: cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).expect("under the root");
            let url = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            files.push((format!("/{url}"), path));
        }
    }
}

/// 64-bit FNV-1a: a stable content tag, not a security measure.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
