//! Hugging Face checkpoint I/O: load from and save to `config.json` + safetensors directories.

mod dtype;
pub mod load;
pub mod save;

pub use load::{CheckpointReader, MissingScore};
pub use save::{SaveDtype, SaveOptions};
