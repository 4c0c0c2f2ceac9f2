use clap::Parser;

fn main() {
    ktplay::cli::quiet_on_broken_pipe();
    let cli = ktplay::cli::Cli::parse();
    std::process::exit(ktplay::cli::run(cli));
}
