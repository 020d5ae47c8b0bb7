//! A health endpoint for check tests: `httpstub ADDRESS FILE` answers every HTTP request with
//! 200 while FILE exists and 503 once it is gone, so that a test turns a check on and off by
//! creating and removing a file. One thread per connection; runs until killed.

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    path::PathBuf,
    thread,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: httpstub ADDRESS FILE");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&address).unwrap_or_else(|err| {
        eprintln!("httpstub: binding {address}: {err}");
        std::process::exit(1);
    });
    let file = PathBuf::from(file);
    for stream in listener.incoming().filter_map(Result::ok) {
        let file = file.clone();
        thread::spawn(move || {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let status = if file.exists() { "200 OK" } else { "503 Service Unavailable" };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
    }
}
