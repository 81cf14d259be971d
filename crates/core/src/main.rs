//! `toe-pipe`: the command line over this crate (see `cli`). The crate does
//! not depend on tch, so libtorch is not linked into the CLI; op nodes run
//! in `toe-pipe-worker` (the root crate).
fn main() -> std::process::ExitCode {
    toe_pipe_core::cli::main()
}
