//! `kube-sim --port N [--kubeconfig PATH] [--time-scale X]`: runs the simulated API
//! server in the foreground so a person can point kubectl or `jisu-deploy` at it.

use std::process::ExitCode;

use kube_sim::{KubeSim, SimOptions};

const USAGE: &str = "usage: kube-sim [--port N] [--kubeconfig PATH] [--time-scale X]

  --port N          listen on 127.0.0.1:N (default 8001; 0 picks a free port)
  --kubeconfig PATH write a kubeconfig for the simulator to PATH
  --time-scale X    simulated seconds per real second (default 1; env KUBE_SIM_TIME_SCALE)

Images containing `crashloop`, `imagepullbackoff`, `neverready` or `flapping` misbehave
that way; all others become ready after 2 simulated seconds.";

fn parse(args: &[String]) -> Result<(SimOptions, Option<String>), String> {
    let mut opts = SimOptions::default().port(8001);
    if let Ok(s) = std::env::var("KUBE_SIM_TIME_SCALE") {
        opts = opts.time_scale(
            s.parse()
                .map_err(|_| format!("KUBE_SIM_TIME_SCALE={s} is not a number"))?,
        );
    }
    let mut kubeconfig = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--port" => {
                opts = opts.port(
                    value()?
                        .parse()
                        .map_err(|_| "--port needs a number".to_string())?,
                )
            }
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--time-scale" => {
                opts = opts.time_scale(
                    value()?
                        .parse()
                        .map_err(|_| "--time-scale needs a number".to_string())?,
                )
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((opts, kubeconfig))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, kubeconfig) = match parse(&args) {
        Ok(x) => x,
        Err(msg) => {
            if !msg.is_empty() {
                eprintln!("error: {msg}");
            }
            eprintln!("{USAGE}");
            return if msg.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let sim = match KubeSim::start(opts).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = kubeconfig {
        if let Err(e) = sim.write_kubeconfig(&path) {
            eprintln!("error: cannot write kubeconfig {path}: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!("kubeconfig written to {path}");
    }
    eprintln!("kube-sim listening on {} (Ctrl-C to stop)", sim.url());
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
