//! The `cairn` command: parse, run, map errors to exit codes (0 ok, 1 error, 3 partial backup).

mod cli;

fn main() {
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            let msg = match e.downcast_ref::<cairn::Error>() {
                Some(ce) => ce.to_string(),
                None => format!("{e:#}"),
            };
            eprintln!("error: {}", msg.replace('\n', " "));
            1
        }
    };
    std::process::exit(code);
}
