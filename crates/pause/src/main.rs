//! `pause`: PID 1 of every pod sandbox.
//!
//! It only exists so that the pod's namespaces outlive its containers. As PID 1
//! of a PID namespace shared by the pod it must reap orphaned children, or they
//! would pile up as zombies. SIGINT and SIGTERM end it with status 0, which is
//! what `docker stop` and the kubelet expect from a healthy sandbox.
//!
//! Only libc is used so that the binary links statically
//! (`-C target-feature=+crt-static`) and runs in an image built from scratch.

use std::io::Write;

extern "C" fn on_terminate(_signal: libc::c_int) {
    // Only async-signal-safe calls are allowed here.
    unsafe { libc::_exit(0) };
}

extern "C" fn on_child(_signal: libc::c_int) {
    loop {
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
    }
}

fn install(signal: libc::c_int, handler: extern "C" fn(libc::c_int), flags: libc::c_int) -> bool {
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
    }
}

fn main() {
    if let Some(arg) = std::env::args().nth(1)
        && (arg == "-v" || arg == "--version")
    {
        println!("pause (cri-dockerd-rs) {}", env!("CARGO_PKG_VERSION"));
        return;
    }

    if unsafe { libc::getpid() } != 1 {
        let _ = writeln!(
            std::io::stderr(),
            "Warning: pause should be the first process"
        );
    }

    let installed = install(libc::SIGINT, on_terminate, 0)
        && install(libc::SIGTERM, on_terminate, 0)
        && install(
            libc::SIGCHLD,
            on_child,
            libc::SA_NOCLDSTOP | libc::SA_RESTART,
        );
    if !installed {
        let _ = writeln!(std::io::stderr(), "pause: sigaction failed");
        std::process::exit(1);
    }

    loop {
        unsafe { libc::pause() };
    }
}
