//! `toe-pipe`: the command line over the `toe_pipe_core` library (see `cli`).
//! It names nothing from `toe_pipe`, so that crate (and with it tch and
//! libtorch) is not linked into the CLI.
fn main() -> std::process::ExitCode {
    toe_pipe_core::cli::main()
}
