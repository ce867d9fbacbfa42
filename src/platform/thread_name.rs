//! Naming the calling thread, as the operating system shows it (`top -H`, `ps -L`, debuggers).
//!
//! A connection's thread starts as `conn-<n>` and, once the connection is a WebSocket peer, goes on
//! as that peer's reader; renaming it keeps stack dumps and thread listings self-explaining.

/// Linux keeps at most 15 bytes of a thread's name.
const MAX_NAME: usize = 15;

/// Renames the calling thread to `name` (cut to 15 bytes). Best effort: a failure is ignored.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn rename_current_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(MAX_NAME).collect();
    bytes.push(0);
    // SAFETY: `bytes` is NUL-terminated, at most 16 bytes as Linux requires, and outlives the
    // call; `pthread_self` names the calling thread.
    unsafe {
        libc::pthread_setname_np(libc::pthread_self(), bytes.as_ptr().cast());
    }
}

/// Elsewhere threads keep the name they were started with.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn rename_current_thread(_name: &str) {}

#[cfg(test)]
mod tests {
    #[test]
    fn renames_the_calling_thread() {
        std::thread::spawn(|| {
            super::rename_current_thread("0123456789abcdef-more");
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            {
                let tid = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
                assert_eq!(tid.trim_end(), "0123456789abcde");
            }
        })
        .join()
        .unwrap();
    }
}
