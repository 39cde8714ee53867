//! Concrete backends, selected by cargo features of the `kiln` facade.
//!
//! | feature | type | device |
//! |---|---|---|
//! | `flex` (default) | [`Cpu`] = `burn::backend::Flex` | CPU, pure Rust (gemm + rayon) |
//! | `cuda` | `Cuda` = `burn_cuda::Cuda` | NVIDIA GPU (libcuda loaded at run time) |
//! | `tch` | `LibTorch` = `burn_tch::LibTorch` | libtorch 2.9.0, CPU or CUDA |
//!
//! Each has an `Autodiff*` twin for training.

pub use burn::backend::Autodiff;

/// The default CPU backend (burn-flex).
#[cfg(feature = "flex")]
pub type Cpu = burn::backend::Flex;
/// [`Cpu`] with automatic differentiation, for training.
#[cfg(feature = "flex")]
pub type AutodiffCpu = Autodiff<Cpu>;

/// NVIDIA GPUs through CubeCL's CUDA runtime (f32 elements).
#[cfg(feature = "cuda")]
pub type Cuda = burn_cuda::Cuda;
/// [`Cuda`] with automatic differentiation.
#[cfg(feature = "cuda")]
pub type AutodiffCuda = Autodiff<Cuda>;

/// LibTorch through tch (f32 elements).
#[cfg(feature = "tch")]
pub type LibTorch = burn_tch::LibTorch;
/// [`LibTorch`] with automatic differentiation.
#[cfg(feature = "tch")]
pub type AutodiffLibTorch = Autodiff<LibTorch>;
