use super::*;

#[derive(Default)]
struct Io {
    rtp: Cell<u64>,
    rtcp: Cell<u64>,
}

impl TransportIo for Io {
    fn on_rtp(&self, _packet: rtc_rtp::Packet) {
        self.rtp.set(self.rtp.get() + 1);
    }
    fn on_rtcp(&self, _packet: Bytes) {
        self.rtcp.set(self.rtcp.get() + 1);
    }
    fn on_state(&self, _state: TransportState) {}
}

/// xorshift64: reproducible noise without a dependency.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Random datagrams shaped to get as far as possible (version 2, RTP or RTCP types, a
/// known SSRC) are all refused, each counted once, and none panics.
#[tokio::test]
async fn noise_never_reaches_the_router() {
    let suites = [
        (false, None),
        (true, None),
        (true, Some("AES_CM_128_HMAC_SHA1_80")),
        (false, Some("AEAD_AES_128_GCM")),
    ];
    for (comedia, suite) in suites {
        let srtp = suite.is_some();
        let io = Rc::new(Io::default());
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let srtp_out = suite.map(|suite| super::super::srtp::generate(suite).unwrap().1);
        let link = Link::new(io.clone(), socket, None, comedia, srtp_out, 32).unwrap();
        let remote: SocketAddr = "127.0.0.1:9".parse().unwrap();
        if !comedia {
            link.set_remote(remote, remote);
        }
        if let Some(suite) = suite {
            let (key, _) = super::super::srtp::generate(suite).unwrap();
            link.set_srtp_in(super::super::srtp::context(&key, true).unwrap());
        }
        let mut params = RtpParameters::default();
        params.encodings.push(Default::default());
        params.encodings[0].ssrc = Some(0x0102_0304);
        link.add_producer(ProducerId::new(), &params);

        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let rounds = 20_000;
        for _ in 0..rounds {
            let len = (noise(&mut seed) % 80) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| noise(&mut seed) as u8).collect();
            if len >= 12 {
                data[0] = 0x80 | (data[0] & 0x3F);
                if noise(&mut seed) & 1 == 0 {
                    data[1] = 192 + (data[1] % 32);
                } else {
                    data[8..12].copy_from_slice(&0x0102_0304u32.to_be_bytes());
                }
            }
            link.on_datagram(&data, remote, false);
        }
        let stats = serde_json::to_value(link.stats()).unwrap();
        let refused: u64 = [
            "unexpected_source",
            "malformed_rtp",
            "malformed_rtcp",
            "unknown_ssrc",
            "srtp_failures",
            "srtp_ssrc_limit",
            "comedia_refused",
        ]
        .iter()
        .map(|k| stats[k].as_u64().unwrap())
        .sum();
        let passed = io.rtp.get() + io.rtcp.get();
        assert_eq!(refused + passed, rounds, "{stats}");
        // Plain noise can form a valid RTCP packet or an RTP packet of the known SSRC
        // now and then; encrypted, nothing random authenticates.
        if srtp {
            assert_eq!(passed, 0, "{stats}");
        }
    }
}

/// A comedia link on loopback with one consumer sending `0x77`, and the SRTP keys when
/// `srtp`.
async fn comedia_link(
    srtp: bool,
) -> (Rc<Io>, Rc<Link>, Option<super::super::srtp::SrtpParameters>) {
    let io = Rc::new(Io::default());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let suite = super::super::srtp::DEFAULT_SUITE;
    let srtp_out = srtp.then(|| super::super::srtp::generate(suite).unwrap().1);
    let link = Link::new(io.clone(), socket, None, true, srtp_out, 32).unwrap();
    let key = srtp.then(|| {
        let (key, _) = super::super::srtp::generate(suite).unwrap();
        link.set_srtp_in(super::super::srtp::context(&key, true).unwrap());
        key
    });
    let mut params = RtpParameters::default();
    params.encodings.push(Default::default());
    params.encodings[0].ssrc = Some(0x77);
    link.add_consumer(ConsumerId::new(), &params);
    (io, link, key)
}

/// A receive-only remote teaches a comedia transport its address with a receiver report
/// about the consumer it receives; a stranger's report about anything else teaches
/// nothing.
#[tokio::test]
async fn comedia_learns_rtcp_only_about_its_own_streams() {
    let (io, link, _) = comedia_link(false).await;
    let stranger: SocketAddr = "127.0.0.2:5000".parse().unwrap();
    let remote: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let rr = |about: u32| {
        let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
        p.extend_from_slice(&about.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    };
    link.on_datagram(&rr(0x99), stranger, false);
    assert_eq!(link.stats().comedia_refused, 1);
    assert!(link.remote().is_none());
    link.on_datagram(&rr(0x77), remote, false);
    assert_eq!(io.rtcp.get(), 1);
    assert_eq!(link.stats().remote_rtcp, Some(remote.to_string()));
}

/// With a producer that declared no SSRC, SRTP of any SSRC gets as far as decryption, but
/// only for `srtp_max_ssrcs / 2` SSRCs before the remote is known.
#[tokio::test]
async fn undeclared_ssrcs_share_the_srtp_budget() {
    let (io, link, _) = comedia_link(true).await;
    let mut params = RtpParameters::default();
    params.encodings.push(Default::default());
    link.add_producer(ProducerId::new(), &params);
    let stranger: SocketAddr = "127.0.0.2:5000".parse().unwrap();
    let mut seed = 7u64;
    for _ in 0..1000 {
        let mut p = vec![0x80, 96, 0, 1, 0, 0, 0, 0];
        p.extend_from_slice(&(noise(&mut seed) as u32).to_be_bytes());
        p.extend_from_slice(&[0xAB; 40]);
        link.on_datagram(&p, stranger, false);
    }
    let stats = serde_json::to_value(link.stats()).unwrap();
    assert_eq!(stats["srtp_ssrcs"], 16, "{stats}");
    assert_eq!(stats["srtp_failures"], 16, "{stats}");
    assert_eq!(stats["srtp_ssrc_limit"], 1000 - 16, "{stats}");
    assert_eq!(io.rtp.get(), 0);
}
