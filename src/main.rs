fn main() {
    ktplay::cli::quiet_on_broken_pipe();
    let cli = ktplay::cli::Cli::from_env();
    std::process::exit(ktplay::cli::run(cli));
}
