//! A minimal HTTP/1.1 client for the agent's loopback admin endpoint.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use super::AdminArgs;

pub fn get(admin: &AdminArgs, path_and_query: &str) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&admin.admin_addr, Duration::from_secs(3))
        .with_context(|| {
            format!(
                "no meshward agent at {} (is `meshward run` up?)",
                admin.admin_addr
            )
        })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        admin.admin_addr
    )?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("read admin response")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("agent answered {status}: {body}");
    }
    Ok(body.to_string())
}

pub fn events(admin: &AdminArgs, follow: bool, json: bool) -> Result<ExitCode> {
    let mut since = 0u64;
    loop {
        let body = get(admin, &format!("/events?since={since}"))?;
        let page: serde_json::Value = serde_json::from_str(&body).context("decode /events")?;
        for e in page["events"].as_array().into_iter().flatten() {
            if json {
                println!("{e}");
            } else {
                println!(
                    "{} {:<5} {}/{} pid={} comm={} {} -> {} rule={}",
                    e["time"].as_str().unwrap_or(""),
                    e["verdict"].as_str().unwrap_or("").to_uppercase(),
                    e["namespace"].as_str().unwrap_or("?"),
                    e["workload"].as_str().unwrap_or("?"),
                    e["pid"],
                    e["comm"].as_str().unwrap_or(""),
                    e["hook"].as_str().unwrap_or(""),
                    e["destination"].as_str().unwrap_or(""),
                    e["rule"].as_str().unwrap_or(""),
                );
            }
        }
        since = page["next"].as_u64().unwrap_or(since);
        if !follow {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
