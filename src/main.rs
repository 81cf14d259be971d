//! `toe-pipe`: the command line over the `toe_pipe` library (see `cli`).
fn main() -> std::process::ExitCode {
    toe_pipe::cli::main()
}
