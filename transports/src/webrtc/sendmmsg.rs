//! Many datagrams in one system call (`sendmmsg(2)`): the fan-out of one packet to many
//! receivers costs one kernel entry per [`BATCH_DATAGRAMS`] datagrams instead of one each.
//! GSO (`UDP_SEGMENT`) is no help here: it splits one buffer into segments for a single
//! destination, and a fan-out has a different destination per datagram.
//!
//! Outside Linux, each datagram is sent on its own.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Datagrams per `sendmmsg` call, and the most a batch holds before it is sent at once.
pub const BATCH_DATAGRAMS: usize = 64;

/// Sends each `(start, end, to)` slice of `bytes` to its `to`, without waiting: a datagram
/// the kernel refuses (socket buffer full, ICMP error pending for its destination) is
/// dropped and counted, as one slow receiver must not hold the others. Returns (sent,
/// dropped).
#[cfg(target_os = "linux")]
pub fn send_all(
    socket: &UdpSocket,
    bytes: &[u8],
    datagrams: &[(usize, usize, SocketAddr)],
) -> (usize, usize) {
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let (mut sent, mut dropped) = (0, 0);
    for chunk in datagrams.chunks(BATCH_DATAGRAMS) {
        // Only the entries in use are written (zeroing all 64 of each array cost more than
        // the sends' own bookkeeping).
        let mut addrs =
            [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; BATCH_DATAGRAMS];
        let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; BATCH_DATAGRAMS];
        let mut msgs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; BATCH_DATAGRAMS];
        let mut n = 0;
        for (start, end, to) in chunk {
            let Some(datagram) = bytes.get(*start..*end) else {
                dropped += 1;
                continue;
            };
            // SAFETY: all-zero bytes are a valid sockaddr_storage.
            let addr = addrs[n].write(unsafe { std::mem::zeroed() });
            let len = write_sockaddr(addr, to);
            let iov = iovs[n].write(libc::iovec {
                iov_base: datagram.as_ptr() as *mut libc::c_void,
                iov_len: datagram.len(),
            });
            // SAFETY: all-zero bytes are a valid mmsghdr (null pointers, zero lengths).
            let msg = msgs[n].write(unsafe { std::mem::zeroed() });
            msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            msg.msg_hdr.msg_namelen = len;
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            n += 1;
        }
        let mut offset = 0;
        while offset < n {
            let remaining = (n - offset) as libc::c_uint;
            // SAFETY: `msgs[..n]` are initialised above; each points at an address and an
            // iovec in arrays that outlive the call, and each iovec at a slice of `bytes`,
            // which is borrowed for the whole function. MSG_DONTWAIT: never block the worker
            // thread.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    msgs.as_mut_ptr().add(offset).cast::<libc::mmsghdr>(),
                    remaining,
                    libc::MSG_DONTWAIT,
                )
            };
            if r <= 0 {
                // The first remaining datagram failed; drop it and go on with the rest.
                dropped += 1;
                offset += 1;
            } else {
                sent += r as usize;
                offset += r as usize;
            }
        }
    }
    (sent, dropped)
}

#[cfg(target_os = "linux")]
fn write_sockaddr(storage: &mut libc::sockaddr_storage, to: &SocketAddr) -> libc::socklen_t {
    match to {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe {
                std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin);
            }
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above.
            unsafe {
                std::ptr::write((storage as *mut libc::sockaddr_storage).cast(), sin6);
            }
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// One `send_to` per datagram where `sendmmsg` does not exist.
#[cfg(not(target_os = "linux"))]
pub fn send_all(
    socket: &UdpSocket,
    bytes: &[u8],
    datagrams: &[(usize, usize, SocketAddr)],
) -> (usize, usize) {
    let (mut sent, mut dropped) = (0, 0);
    for (start, end, to) in datagrams {
        match bytes.get(*start..*end).map(|d| socket.try_send_to(d, *to)) {
            Some(Ok(_)) => sent += 1,
            _ => dropped += 1,
        }
    }
    (sent, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_datagram_of_a_batch_arrives_at_its_own_destination() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let v6 = UdpSocket::bind("[::1]:0").await.ok();
        let sender6 = UdpSocket::bind("[::1]:0").await.ok();
        // More than one call's worth, to two receivers, alternating.
        let mut bytes = Vec::new();
        let mut datagrams = Vec::new();
        let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..(BATCH_DATAGRAMS + 10) {
            let start = bytes.len();
            bytes.extend_from_slice(format!("datagram {i}").as_bytes());
            let to = if i % 2 == 0 {
                v4.local_addr().unwrap()
            } else {
                other.local_addr().unwrap()
            };
            datagrams.push((start, bytes.len(), to));
        }
        assert_eq!(
            send_all(&sender, &bytes, &datagrams),
            (BATCH_DATAGRAMS + 10, 0)
        );
        let mut buf = [0u8; 64];
        for i in (0..(BATCH_DATAGRAMS + 10)).step_by(2) {
            let n = v4.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("datagram {i}").as_bytes());
        }
        for i in (1..(BATCH_DATAGRAMS + 10)).step_by(2) {
            let n = other.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("datagram {i}").as_bytes());
        }
        if let (Some(v6), Some(sender6)) = (v6, sender6) {
            let to = v6.local_addr().unwrap();
            assert_eq!(send_all(&sender6, b"six", &[(0, 3, to)]), (1, 0));
            let n = v6.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"six");
        }
    }
}
