//! The `xipgate` binary: parses the command line and the config, then hands over to the
//! library. All logic lives in the `xipgate` library crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pingora_core::server::configuration::Opt;

// mimalloc instead of glibc malloc: Pingora allocates and frees many small buffers per
// request (header maps, boxed futures, Bytes), and glibc's malloc/free took about 15% of
// the proxy's CPU under load (docs/performance.md, what the profile showed). Built without
// transparent huge pages (Cargo feature `no_thp`): with them, resident memory grows in
// 2 MiB steps and every registry refresh faulted in and zeroed fresh huge pages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Edge proxy: every Eureka service and instance reachable by its own host name.
#[derive(Parser, Debug)]
#[command(name = "xipgate", version)]
struct Cli {
    /// Pingora's flags: -c FILE, -t (test the config and exit), -u (upgrade), -d (daemon).
    #[command(flatten)]
    pingora: Opt,
    /// Run a complete demo: a stand-in Eureka with a few services, backends on loopback,
    /// the proxy on 127.0.0.1:8080 and the console on http://127.0.0.1:9080/.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut cli = Cli::parse();
    if cli.demo {
        return xipgate::demo::run(cli.pingora);
    }
    let path = cli.pingora.conf.take().map(PathBuf::from);
    let cfg = match xipgate::config::load(path.as_deref(), |k| std::env::var(k).ok()) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("xipgate: configuration invalid: {errors}");
            return ExitCode::from(2);
        }
    };
    if cli.pingora.test {
        println!("xipgate: configuration {} is valid", cfg.source);
        println!("xipgate: access: {}", cfg.access.summary());
        return ExitCode::SUCCESS;
    }
    match xipgate::app::build_server(cli.pingora, cfg) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("xipgate: {e}");
            ExitCode::FAILURE
        }
    }
}
