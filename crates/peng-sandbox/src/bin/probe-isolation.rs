//! Prints what the isolation probe decides on this machine, as `peng status` would show it:
//! `on (...)` or `off (why)`. For operators checking a machine, and for the tests.

fn main() {
    let dirs: Vec<std::path::PathBuf> = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"]
        .iter()
        .map(std::path::PathBuf::from)
        .collect();
    println!("{}", peng_sandbox::probe(&dirs, Vec::new()).describe());
}
