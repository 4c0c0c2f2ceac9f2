fn main() {
    ktplay::quiet_on_broken_pipe();
    let cli = ktplay::Cli::from_env();
    std::process::exit(ktplay::run_cli(cli));
}
