//! Process-wide tuning of glibc's allocator for tensor workloads: freed large buffers are kept
//! for reuse instead of being handed back to the kernel.
//!
//! By default glibc serves every allocation above a (dynamic, at most 32 MiB) threshold with a
//! fresh `mmap` and unmaps it on free, so each step of a training loop page-faults and zeroes
//! all its activations, gradients and logit chunks again. [`keep_freed_memory`] raises the mmap
//! threshold to 2 GiB and disables trimming: big tensors then come from the heap and are reused
//! from one op to the next. On a SmolLM2-135M-shaped DPO step (2 x 128 tokens, 2 cores) this cut
//! the step 13-16 % in measurements taken together (see the README's benchmark section); the
//! cost is that the process keeps its peak heap until it exits.
//!
//! It is the same as starting the process with
//! `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=...`,
//! for binaries that cannot control their environment. Library crates never call it: the
//! allocator, like the backend, is the binary's choice. The examples and the real-shape bench call
//! it first thing; set `KILN_MALLOC=system` to keep glibc's defaults.

/// Keeps freed large blocks in the heap for reuse (glibc only; see the [module docs](self)).
/// Call it at the start of `main`, before the first tensor. Returns whether the allocator was
/// tuned: `false` on other C libraries or platforms, when `KILN_MALLOC=system` is set, or when
/// glibc refused a setting (a `tracing` warning says which).
pub fn keep_freed_memory() -> bool {
    if std::env::var("KILN_MALLOC").is_ok_and(|v| v == "system") {
        return false;
    }
    tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn tune() -> bool {
    let settings = [
        ("M_MMAP_THRESHOLD", libc::M_MMAP_THRESHOLD, i32::MAX),
        ("M_TRIM_THRESHOLD", libc::M_TRIM_THRESHOLD, i32::MAX),
    ];
    settings.iter().all(|&(name, param, value)| {
        // SAFETY: mallopt takes two integers and only updates malloc's own parameters under its
        // lock; it has no pointer arguments and no preconditions.
        let ok = unsafe { libc::mallopt(param, value) } == 1;
        if !ok {
            tracing::warn!(setting = name, value, "glibc mallopt refused the setting");
        }
        ok
    })
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn glibc_accepts_both_settings() {
        if std::env::var_os("KILN_MALLOC").is_none() {
            let glibc = cfg!(all(target_os = "linux", target_env = "gnu"));
            assert_eq!(super::keep_freed_memory(), glibc);
        }
    }
}
