//! Runs built-in ops for `toe-pipe` (see `toe_pipe::worker`).
fn main() -> std::process::ExitCode {
    toe_pipe::worker::main(toe_pipe::ops::registry(), toe_pipe::runtime::runtime())
}
