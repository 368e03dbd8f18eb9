/// See Cargo.toml: small allocations under floods.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = simboxd::cli::main() {
        eprintln!("simboxd: {}", simboxd::cli::error_chain(&e));
        std::process::exit(1);
    }
}
