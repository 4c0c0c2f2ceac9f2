//! Link-time settings for the `ktplay` binary only (no dependency is rebuilt for them).
//!
//! `ktplay check` runs once per file from editors, hooks and CI, so process start-up is most of
//! its cost. As a position-independent executable, the dynamic loader applied ~47,000 relative
//! relocations before `main`, writing to (so copying) every page of the 840 KiB RELRO segment:
//! about 200 of a one-file check's 440 page faults and a third of its instructions. The binary is
//! therefore linked at a fixed address, as Go links `kubectl`, `kube-apiserver` and Prometheus by
//! default; the stack, the heap and the shared libraries are still randomized. Measured with
//! `bench/check.sh`: `ktplay --version` 2.7 → 1.7 ms, a one-file check about 1.8 ms less.
//!
//! `KTPLAY_PIE=1` at build time keeps a position-independent binary (for distributions that
//! require one), with packed relative relocations (`DT_RELR`, glibc ≥ 2.36) to make the
//! loader's step cheaper.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=KTPLAY_PIE");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    if std::env::var_os("KTPLAY_PIE").is_some_and(|v| v != "0") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    } else {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
