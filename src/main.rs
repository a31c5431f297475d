//! The `vpclab` command: all of it lives in the library; see `src/lib.rs` for the layout.

fn main() -> std::process::ExitCode {
    vpclab::cli::run()
}
