//! Concrete backends, selected by cargo features of the `kiln` facade.
//!
//! | feature | type | device |
//! |---|---|---|
//! | `flex` (default) | [`Cpu`] = `burn::backend::Flex` | CPU, pure Rust (gemm + rayon) |
//! | `cuda` | `Cuda` = `burn_cuda::Cuda` | NVIDIA GPU (libcuda loaded at run time) |
//! | `tch` | `LibTorch` = `burn_tch::LibTorch` | libtorch 2.9.0, CPU or CUDA |
//! | `wgpu` | `Wgpu` = `burn_wgpu::Wgpu` | any Vulkan / Metal / DX12 device, Mesa's lavapipe included |
//!
//! Each has an `Autodiff*` twin for training. [`Selected`] / [`AutodiffSelected`] name the one the
//! enabled features pick (cuda, then tch, then wgpu, then flex), with [`decode_concurrency`] to
//! match. On wgpu the default device is the best adapter; `CUBECL_WGPU_DEFAULT_DEVICE=Cpu` picks
//! a CPU Vulkan device such as lavapipe (`scripts/gpu/wgpu_check.sh`).

pub use burn::backend::Autodiff;
/// burn's activation checkpointing: memory-bound ops (element-wise, reshapes) are recomputed in
/// the backward pass instead of kept; matmul outputs stay stored.
pub use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;

/// A training backend with activation checkpointing, e.g. `Checkpointed<Cpu>`: every trainer
/// takes it (they are generic over `AutodiffBackend`). Measured on SmolLM2-135M's shape (README,
/// "Scaling out"): full fine-tuning peaks 13 % lower for 7 % more time; LoRA does not gain.
pub type Checkpointed<B> = Autodiff<B, BalancedCheckpointing>;

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

/// GPUs through CubeCL's wgpu runtime (f32 elements): Vulkan, Metal, DX12.
#[cfg(feature = "wgpu")]
pub type Wgpu = burn_wgpu::Wgpu;
/// [`Wgpu`] with automatic differentiation.
#[cfg(feature = "wgpu")]
pub type AutodiffWgpu = Autodiff<Wgpu>;

/// The backend the facade's features select, for binaries that run on whatever the build enables:
/// `Cuda` with `cuda`, else `LibTorch` with `tch`, else `Wgpu` with `wgpu`, else [`Cpu`]
/// (flex, the default). The examples
/// and `tests/backend.rs` use it, so one feature flag moves all of them.
#[cfg(feature = "cuda")]
pub type Selected = Cuda;
/// The backend the facade's features select, for binaries that run on whatever the build enables:
/// `Cuda` with `cuda`, else `LibTorch` with `tch`, else `Wgpu` with `wgpu`, else [`Cpu`]
/// (flex, the default). The examples
/// and `tests/backend.rs` use it, so one feature flag moves all of them.
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub type Selected = LibTorch;
/// The backend the facade's features select, for binaries that run on whatever the build enables:
/// `Cuda` with `cuda`, else `LibTorch` with `tch`, else `Wgpu` with `wgpu`, else [`Cpu`]
/// (flex, the default). The examples
/// and `tests/backend.rs` use it, so one feature flag moves all of them.
#[cfg(all(feature = "wgpu", not(any(feature = "cuda", feature = "tch"))))]
pub type Selected = Wgpu;
/// The backend the facade's features select, for binaries that run on whatever the build enables:
/// `Cuda` with `cuda`, else `LibTorch` with `tch`, else `Wgpu` with `wgpu`, else [`Cpu`]
/// (flex, the default). The examples and `tests/backend.rs` use it, so one feature flag moves all
/// of them.
#[cfg(all(
    feature = "flex",
    not(any(feature = "cuda", feature = "tch", feature = "wgpu"))
))]
pub type Selected = Cpu;
/// [`Selected`] with automatic differentiation, for training.
#[cfg(any(feature = "flex", feature = "cuda", feature = "tch", feature = "wgpu"))]
pub type AutodiffSelected = Autodiff<Selected>;

/// How many prompt batches to decode concurrently on [`Selected`]
/// (`kiln_sampling::GenerationConfig::concurrent_batches`): on flex one per core, since each
/// decode step of a small batch leaves cores idle; on LibTorch, CUDA and wgpu one, since their
/// kernels already use every core (libtorch's intra-op pool) or the whole GPU.
pub fn decode_concurrency() -> usize {
    if cfg!(any(feature = "cuda", feature = "tch", feature = "wgpu")) {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
