/*
 * What libtorch says about itself, for lineage records (src/runtime/mod.rs):
 * at::show_config() (version, CUDA version, CPU capability in use) and
 * at::get_cpu_capability() (the CPU kernels ATen dispatches to).
 *
 * Why C++: both return std::string, which Rust cannot receive. They are
 * declared here rather than through <ATen/Version.h>, which pulls in all of
 * ATen's headers (minutes of compile time) for two declarations; the
 * signatures are part of libtorch's public API (TORCH_API in ATen/Version.h)
 * and resolve against libtorch_cpu, which the worker links anyway.
 */
#include <cstring>
#include <string>

namespace at {
std::string show_config();
std::string get_cpu_capability();
}  // namespace at

namespace {
/* Copies as much of `s` as fits, NUL-terminated; returns its full length,
 * so a caller with too small a buffer can ask again. */
size_t copy_out(const std::string &s, char *buf, size_t cap) {
    if (cap > 0) {
        size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
        std::memcpy(buf, s.data(), n);
        buf[n] = '\0';
    }
    return s.size();
}
}  // namespace

/* Exceptions must not cross into Rust: an error reads as an empty string. */
extern "C" size_t toe_torch_show_config(char *buf, size_t cap) {
    try {
        return copy_out(at::show_config(), buf, cap);
    } catch (...) {
        return copy_out(std::string(), buf, cap);
    }
}

extern "C" size_t toe_torch_cpu_capability(char *buf, size_t cap) {
    try {
        return copy_out(at::get_cpu_capability(), buf, cap);
    } catch (...) {
        return copy_out(std::string(), buf, cap);
    }
}
