//! Readers and writers of the artifact formats every op uses: numeric and
//! string `.npy` arrays, `.pt` files written by `torch.save`, and TorchScript
//! archives. Pickled data goes through a safe unpickler that never runs code.

pub mod coco;
pub mod npy;
pub mod npy_strings;
pub mod pickle;
pub mod torch_pt;
pub mod torchscript;

pub use coco::CaptionCorpus;
pub use npy::{
    array_to_tensor, read_npy, read_npy_header, read_npy_tensor, tensor_to_array, write_npy, write_npy_tensor,
    NpyElement, NpyHeader,
};
pub use npy_strings::{read_indices, read_strings, write_strings};
pub use torch_pt::{
    detect_kind, load_pt, load_state_dict, load_tensor_pt, save_nested_state_dicts_pt, save_pt, save_state_dict_pt,
    save_tensor_pt, PtValue, TorchFileKind,
};
pub use torchscript::{is_torchscript, ScriptModule};
