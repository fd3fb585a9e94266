//! Compiles the tokenizer vocabularies into the compact tables the token counter reads in place
//! (layout in `src/tokens/tables.rs`), so the running gateway never builds one: no start-up
//! work, no transient memory, and only the pages a count touches become resident.

#[path = "src/tokens/tables.rs"]
#[allow(dead_code)] // the lookup half is the counter's
mod tables;

use std::path::PathBuf;

fn main() -> Result<(), String> {
    println!("cargo::rerun-if-changed=src/tokens/tables.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("cargo sets OUT_DIR")?);
    let vocabularies = [
        ("o200k_base", tiktoken_rs::o200k_base()),
        ("cl100k_base", tiktoken_rs::cl100k_base()),
    ];
    for (name, bpe) in vocabularies {
        let bpe = bpe.map_err(|e| format!("{name}: {e}"))?;
        let tokens = ordinary_tokens(&bpe);
        let compiled = tables::compile(tokens.iter().map(Vec::as_slice))
            .ok_or_else(|| format!("{name} does not fit the table layout"))?;
        for (suffix, bytes) in [
            ("arena", &compiled.arena),
            ("ends", &compiled.ends),
            ("slots", &compiled.slots),
        ] {
            let path = out.join(format!("{name}.{suffix}"));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The tokens of ranks 0, 1, … up to the first special token (ordinary ranks are dense from
/// zero; special tokens, which plain text never produces, are left out).
fn ordinary_tokens(bpe: &tiktoken_rs::CoreBPE) -> Vec<Vec<u8>> {
    let specials: Vec<Vec<u8>> = bpe
        .special_tokens()
        .into_iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let mut tokens = Vec::new();
    while let Ok(bytes) = bpe.decode_bytes(&[tokens.len() as u32]) {
        if specials.contains(&bytes) {
            break;
        }
        tokens.push(bytes);
    }
    tokens
}
