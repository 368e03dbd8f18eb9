fn main() {
    if let Err(e) = simboxd::cli::main() {
        eprintln!("simboxd: {e:#}");
        std::process::exit(1);
    }
}
