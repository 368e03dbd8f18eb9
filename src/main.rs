fn main() {
    if let Err(e) = simboxd::cli::main() {
        eprintln!("simboxd: {}", simboxd::cli::error_chain(&e));
        std::process::exit(1);
    }
}
