//! What the worker tells toe-pipe about the library its ops ran on, for
//! lineage: libtorch's version, the CUDA version it was built with, the CPU
//! kernels it dispatched to, and the GPU an op used. Two machines that print
//! different digits for the same pipeline differ in one of these (or in the
//! CPU, which toe-pipe records itself).

use std::ffi::{c_char, c_int, c_void, CStr};

use toe_pipe_core::ops::Device;
use toe_pipe_core::store::records::LibtorchFacts;
use toe_pipe_core::worker::Runtime;

extern "C" {
    // src/runtime/torch_config.cpp
    fn toe_torch_show_config(buf: *mut c_char, cap: usize) -> usize;
    fn toe_torch_cpu_capability(buf: *mut c_char, cap: usize) -> usize;
}

/// What the worker binaries pass to `toe_pipe_core::worker::main`.
pub fn runtime() -> Runtime {
    Runtime {
        gpu_count: || tch::Cuda::device_count().max(0) as usize,
        set_threads: |n| tch::set_num_threads(n.min(i32::MAX as usize) as i32),
        facts,
    }
}

/// libtorch's facts after an op ran on `device`.
pub fn facts(device: Device) -> LibtorchFacts {
    let config = cxx_string(toe_torch_show_config);
    let capability = cxx_string(toe_torch_cpu_capability);
    LibtorchFacts {
        libtorch: build_setting(&config, "TORCH_VERSION"),
        cpu_capability: (!capability.is_empty()).then_some(capability),
        cuda: build_setting(&config, "CUDA_VERSION"),
        gpu: if device == Device::Cuda && tch::Cuda::is_available() { gpu_name() } else { None },
    }
}

/// A string from one of the shim's functions (which report the full
/// length, so a second call gets what did not fit).
fn cxx_string(f: unsafe extern "C" fn(*mut c_char, usize) -> usize) -> String {
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..2 {
        // SAFETY: the shim writes at most `buf.len()` bytes, NUL-terminated.
        let len = unsafe { f(buf.as_mut_ptr().cast(), buf.len()) };
        if len < buf.len() {
            buf.truncate(len);
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf = vec![0u8; len + 1];
    }
    String::new()
}

/// `NAME=value` from show_config's "Build settings" line (`NAME=value, ...`).
fn build_setting(config: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    config
        .split([',', '\n'])
        .map(str::trim)
        .find_map(|item| item.strip_prefix(&key))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The name of CUDA device 0 (the node's one visible GPU), from the CUDA
/// driver, which libtorch has loaded when the op used the GPU. tch has no
/// call for it.
fn gpu_name() -> Option<String> {
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type Get = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    // SAFETY: dlopen/dlsym of the CUDA driver's documented C entry points,
    // called with their documented signatures; RTLD_NOLOAD only finds the
    // library libtorch already loaded.
    unsafe {
        let lib = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if lib.is_null() {
            return None;
        }
        let sym = |name: &CStr| -> *mut c_void { libc::dlsym(lib, name.as_ptr()) };
        let (init, get, name) = (sym(c"cuInit"), sym(c"cuDeviceGet"), sym(c"cuDeviceGetName"));
        if init.is_null() || get.is_null() || name.is_null() {
            return None;
        }
        let init = std::mem::transmute::<*mut c_void, Init>(init);
        let get = std::mem::transmute::<*mut c_void, Get>(get);
        let name = std::mem::transmute::<*mut c_void, Name>(name);
        let mut dev: c_int = 0;
        let mut buf = [0 as c_char; 256];
        if init(0) != 0 || get(&mut dev, 0) != 0 || name(buf.as_mut_ptr(), buf.len() as c_int, dev) != 0 {
            return None;
        }
        Some(CStr::from_ptr(buf.as_ptr()).to_string_lossy().trim().to_owned()).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtorch_reports_its_version_and_cpu_kernels() {
        let f = facts(Device::Cpu);
        let version = f.libtorch.expect("TORCH_VERSION in show_config");
        assert!(version.chars().next().is_some_and(|c| c.is_ascii_digit()), "{version}");
        let cap = f.cpu_capability.expect("a CPU capability");
        assert!(
            ["NO AVX", "AVX2", "AVX512", "DEFAULT", "VSX", "ZVECTOR", "SVE256", "SVE128"].contains(&cap.as_str()),
            "{cap}"
        );
        assert_eq!(f.gpu, None);
    }

    #[test]
    fn build_settings_are_read() {
        let config = "PyTorch built with:\n  - CPU capability usage: AVX2\n  - Build settings: BLAS_INFO=mkl, CUDA_VERSION=13.0, TORCH_VERSION=2.13.0, USE_CUDA=1, \n";
        assert_eq!(build_setting(config, "TORCH_VERSION").as_deref(), Some("2.13.0"));
        assert_eq!(build_setting(config, "CUDA_VERSION").as_deref(), Some("13.0"));
        assert_eq!(build_setting(config, "ROCM_VERSION"), None);
    }
}
