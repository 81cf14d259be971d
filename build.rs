//! Bakes the location of the venv's libtorch into the binaries (rpath), so
//! `toe-pipe` and the test binaries run without `LD_LIBRARY_PATH`.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let link = manifest.join(".venv").join("libtorch");
    println!("cargo:rerun-if-changed=.venv/libtorch");
    // Resolve the symlink so the rpath stays valid if .venv/libtorch is re-pointed.
    let lib = link.canonicalize().unwrap_or(link).join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // libtorch_cuda is only reached through static registration, so the
    // linker's --as-needed would drop it and CUDA would look absent at run
    // time. Keep it explicitly when the wheel has it (the PyPI wheel does).
    // Only the binaries that run torch code get it (worker, tests, benches,
    // examples, which may run on a GPU): the `toe-pipe` CLI never
    // calls into libtorch, and loading libtorch costs ~0.35 s of static
    // initialisers per process, which would dominate every no-op run.
    if lib.join("libtorch_cuda.so").exists() {
        for scope in ["-bin=toe-pipe-worker", "-tests", "-benches", "-examples"] {
            println!("cargo:rustc-link-arg{scope}=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg{scope}=-L{}", lib.display());
            println!("cargo:rustc-link-arg{scope}=-ltorch_cuda");
            println!("cargo:rustc-link-arg{scope}=-Wl,--as-needed");
        }
    }
    if !lib.exists() {
        println!("cargo:warning=libtorch not found at {}; run scripts/setup.sh first", lib.display());
    }
    build_jpeg_shim();
    build_torch_config_shim();
}

/// Two libtorch calls that return std::string (src/runtime/torch_config.cpp).
fn build_torch_config_shim() {
    println!("cargo:rerun-if-changed=src/runtime/torch_config.cpp");
    // libtorch's C++ ABI (the PyPI wheels use the C++11 std::string).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").map(|v| v != "0").unwrap_or(true);
    cc::Build::new()
        .cpp(true)
        .file("src/runtime/torch_config.cpp")
        .define("_GLIBCXX_USE_CXX11_ABI", if abi { "1" } else { "0" })
        .warnings(true)
        .compile("toe_torch_config");
}

/// JPEG decoding goes through libjpeg-turbo, the decoder Pillow bundles, so
/// that CLIP preprocessing sees Pillow's pixels bit for bit (src/images/jpeg.rs).
fn build_jpeg_shim() {
    println!("cargo:rerun-if-changed=src/images/jpeg_shim.c");
    if let Err(e) = cc::Build::new().file("src/images/jpeg_shim.c").warnings(true).try_compile("toe_jpeg_shim") {
        panic!(
            "cannot compile src/images/jpeg_shim.c against libjpeg ({e}).\n\
             toe-pipe decodes JPEG with libjpeg-turbo; install its headers \
             (Debian, Ubuntu: `apt-get install libjpeg-dev`)"
        );
    }
    println!("cargo:rustc-link-lib=jpeg");
}
