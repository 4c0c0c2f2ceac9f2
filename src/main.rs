use clap::Parser;

fn main() {
    let cli = ktplay::cli::Cli::parse();
    std::process::exit(ktplay::cli::run(cli));
}
