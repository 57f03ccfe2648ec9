//! The `ringmail` binary: parse the command line and run it. Run under the name `sendmail`
//! (a link from /usr/sbin/sendmail) it is the sendmail command; under `mailq`, `sendmail -bp`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let mut args = std::env::args();
    let name = args.next().unwrap_or_default();
    let name = std::path::Path::new(&name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.as_str() {
        "sendmail" => ringmail::cli::sendmail::run(&args.collect::<Vec<_>>()),
        "mailq" => {
            let mut rest = vec!["-bp".to_string()];
            rest.extend(args);
            ringmail::cli::sendmail::run(&rest)
        }
        _ => ringmail::cli::run(ringmail::cli::Cli::parse()),
    }
}
