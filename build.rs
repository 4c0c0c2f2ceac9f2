//! Link-time settings for the `ktplay` binary only (no dependency is rebuilt for them).
//!
//! `ktplay check` is run once per file by editors, hooks and CI, so process start-up is most of
//! its cost: the dynamic loader applied ~44,000 relative relocations to the position-independent
//! binary before `main` (38% of a one-file check's instructions). Packed relative relocations
//! (`DT_RELR`, glibc ≥ 2.36 and binutils ≥ 2.38) keep the binary position-independent (ASLR) and
//! make that step a short bitmap walk. Older toolchains ignore the flag with a warning.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" && std::env::var_os("KTPLAY_NO_RELR").is_none() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-env-changed=KTPLAY_NO_RELR");
}
