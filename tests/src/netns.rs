//! A network namespace for a test, joined to this one by a veth pair, with a default route
//! through it: for stacks that will not use loopback (Firefox gathers no 127.0.0.1
//! candidates, and none at all without a default route). Needs root, as the test machines
//! give. Removed when dropped.

use std::net::Ipv4Addr;
use std::process::Command;

/// The namespace and the two ends of its veth pair.
pub struct Namespace {
    /// Its name, for `ip netns exec`.
    pub name: String,
    /// The address of the pair's end in this namespace: bind servers here.
    pub host: Ipv4Addr,
    /// The address of the end inside the namespace.
    pub inner: Ipv4Addr,
    host_if: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Namespace {
    /// A new namespace named after this process, on 10.99.N.0/24.
    pub fn create() -> Self {
        let pid = std::process::id();
        let n = (pid % 250) as u8 + 1;
        let name = format!("sb{pid}");
        let host_if = format!("sbh{pid}");
        let inner_if = format!("sbn{pid}");
        let host = Ipv4Addr::new(10, 99, n, 1);
        let inner = Ipv4Addr::new(10, 99, n, 2);
        // Left over by a killed run of the same pid: start clean.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        ip(&["netns", "add", &name]);
        let ns = Self {
            name,
            host,
            inner,
            host_if,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &inner_if,
        ]);
        ip(&["link", "set", &inner_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host}/24"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{inner}/24"), "dev", &inner_if]);
        inside(&["link", "set", &inner_if, "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &host.to_string()]);
        ns
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
