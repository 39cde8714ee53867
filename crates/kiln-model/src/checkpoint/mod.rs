//! Hugging Face checkpoint I/O: load from and save to `config.json` + safetensors directories.

mod dtype;
pub mod load;
pub mod load_options;
pub mod save;

pub use load::{ALLOW_NON_FINITE_ENV, CheckpointReader, MissingScore};
pub use load_options::{LoadDtype, LoadOptions, check_backend_dtype};
pub use save::{SaveDtype, SaveOptions};
