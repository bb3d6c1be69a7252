//! The `keycanary` binary: everything is in the library's `cli` room.

fn main() -> std::process::ExitCode {
    keycanary::cli::main()
}
