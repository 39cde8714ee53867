//! The online iterative DPO loop (RLHFlow, arXiv 2405.07863) on a built-in tiny task.
//!
//! **Placeholder.** The loop is assembled from kiln-model, kiln-sampling, kiln-reward, kiln-data and
//! kiln-train, which are still being built (see docs/ARCHITECTURE.md for the plan). Until they land
//! this example trains nothing: it says what is missing and exits successfully.
#![allow(clippy::print_stdout)]

fn main() {
    println!("kiln iterative_dpo: not implemented yet.");
    println!();
    println!("Ready:   kiln-losses (DPO family, Bradley-Terry, RRHF, sequence log-probs).");
    println!(
        "Missing: the Llama-3 model and checkpoint I/O (kiln-model), generation (kiln-sampling),"
    );
    println!("         reward models (kiln-reward), trainers (kiln-train) and the loop itself.");
    println!("Nothing was trained.");
}
