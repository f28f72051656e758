use super::process::MAX_UNIX_SOCKET_PATH_BYTES;
use super::*;
use switchboard_core::config::{MAX_RETRANSMISSION_BUFFER_PACKETS, MAX_WORKERS, PlacementPolicy};
use switchboard_core::rtp_parameters::MediaKind;
use switchboard_core::rtp_parameters::RtpCodecCapability;

#[test]
fn middleware_settings_come_from_toml_and_env_and_are_checked() {
    let mut config = Settings::from_toml_str(
        "[middleware]\nqueue_capacity = 16\nattach = [\"logging\"]\n\
         [middleware.options.logging]\ninterval_ms = 500\nmedia = true\n",
    )
    .unwrap();
    assert_eq!(config.middleware.queue_capacity, 16);
    assert_eq!(config.middleware.attach, ["logging"]);
    config
        .apply_env(env(&[
            (
                "SWITCHBOARD_MIDDLEWARE__OPTIONS__LOGGING__INTERVAL_MS",
                "2000",
            ),
            (
                "SWITCHBOARD_MIDDLEWARE__OPTIONS__RECORDER__DIRECTORY",
                "/var/rec",
            ),
            (
                "SWITCHBOARD_MIDDLEWARE__ATTACH",
                "[\"logging\", \"recorder\"]",
            ),
            ("SWITCHBOARD_MIDDLEWARE__CLOSE_TIMEOUT_MS", "1500"),
        ]))
        .unwrap();
    assert_eq!(config.middleware.close_timeout_ms, 1500);
    assert_eq!(config.middleware.attach, ["logging", "recorder"]);
    let logging = config
        .middleware
        .options_for("logging", &serde_json::json!({ "media": false }));
    assert_eq!(
        logging,
        serde_json::json!({ "interval_ms": 2000, "media": false }),
        "attach options overlay the configured ones"
    );
    assert_eq!(
        config
            .middleware
            .options_for("recorder", &serde_json::Value::Null),
        serde_json::json!({ "directory": "/var/rec" })
    );
    config.validate().unwrap();

    config.middleware.queue_capacity = 0;
    config.middleware.close_timeout_ms = 0;
    config.middleware.attach = vec!["logging".into(), "".into(), "logging".into()];
    let errors = config.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "middleware.queue_capacity",
            "middleware.close_timeout_ms",
            "middleware.attach[1]",
            "middleware.attach[2]"
        ]
    );
}

fn fields(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn placement_parses_and_rejects_out_of_range_thresholds() {
    let c = Settings::from_toml_str(
        "[placement]\npolicy = \"pack\"\nmax_worker_cpu = 0.5\nmax_worker_packets_per_second = 10\n",
    )
    .unwrap();
    assert_eq!(c.placement.policy, PlacementPolicy::Pack);
    assert_eq!(c.placement.max_worker_packets_per_second, 10);
    c.validate().unwrap();
    let mut bad = Settings::default();
    bad.placement.max_worker_cpu = 1.5;
    bad.placement.max_worker_packets_per_second = 0;
    bad.placement.sample_interval_ms = 5;
    let errors = bad.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        vec![
            "placement.max_worker_cpu",
            "placement.max_worker_packets_per_second",
            "placement.sample_interval_ms"
        ]
    );
    let mut env = Settings::default();
    env.apply_env([(
        "SWITCHBOARD_PLACEMENT__MAX_WORKER_CPU".to_owned(),
        "1".to_owned(),
    )])
    .unwrap();
    assert_eq!(env.placement.max_worker_cpu, 1.0);
    assert!(Settings::from_toml_str("[placement]\npolicy = \"random\"\n").is_err());
}

#[test]
fn cluster_is_off_by_default_and_checked_when_on() {
    let c = Settings::default();
    assert!(!c.cluster.enabled());
    c.validate().unwrap();
    let c = Settings::from_toml_str(
        "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nnode_id = \"node-a\"\n",
    )
    .unwrap();
    assert!(c.cluster.enabled());
    c.validate().unwrap();
    let mut bad = c.clone();
    bad.cluster.redis_url = "127.0.0.1:6379".to_owned();
    bad.cluster.node_id = "a b".to_owned();
    bad.cluster.key_prefix = String::new();
    bad.cluster.advertise_rpc = "nowhere".to_owned();
    bad.cluster.heartbeat_ms = 1_000;
    bad.cluster.node_ttl_ms = 1_500;
    let errors = bad.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        vec![
            "cluster.redis_url",
            "cluster.node_id",
            "cluster.key_prefix",
            "cluster.advertise_rpc",
            "cluster.node_ttl_ms"
        ]
    );
    let mut env = Settings::default();
    env.apply_env([(
        "SWITCHBOARD_CLUSTER__REDIS_URL".to_owned(),
        "redis+unix:///tmp/r.sock".to_owned(),
    )])
    .unwrap();
    assert!(env.cluster.enabled());
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn opus() -> RtpCodecCapability {
    RtpCodecCapability {
        kind: MediaKind::Audio,
        mime_type: "audio/opus".to_owned(),
        preferred_payload_type: Some(111),
        clock_rate: 48_000,
        channels: Some(2),
        parameters: Default::default(),
        rtcp_feedback: Vec::new(),
    }
}

// --- TOML ---

#[test]
fn defaults_are_valid() {
    assert_eq!(Settings::default().validate(), Ok(()));
}

#[test]
fn empty_document_is_the_defaults() {
    assert_eq!(Settings::from_toml_str(""), Ok(Settings::default()));
}

#[test]
fn webrtc_addresses_and_port_range_are_checked() {
    let mut config = Settings::default();
    config.server.workers = 4;
    config.webrtc.listen_ip = "0.0.0.0".into();
    config.webrtc.port_min = 50_000;
    config.webrtc.port_max = 50_001;
    let errors = config.validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["webrtc.announced_ip", "webrtc.port_max"]);
    config.webrtc.announced_ip = "203.0.113.7".into();
    config.webrtc.port_max = 50_003;
    assert!(config.validate().is_ok());
    config.webrtc.listen_ip = "localhost".into();
    assert_eq!(config.validate().unwrap_err()[0].field, "webrtc.listen_ip");
}

#[test]
fn rtp_addresses_and_port_range_are_checked() {
    let mut config = Settings::default();
    config.rtp.listen_ip = "0.0.0.0".into();
    config.rtp.port_min = 40_050;
    config.rtp.port_max = 40_200;
    let errors = config.validate().unwrap_err();
    assert_eq!(fields(&errors), ["rtp.announced_ip", "rtp.port_min"]);
    assert!(
        errors[1]
            .message
            .contains("overlaps the webrtc range 40000-40099")
    );
    config.rtp.announced_ip = "203.0.113.7".into();
    config.rtp.port_min = 40_100;
    assert_eq!(config.validate(), Ok(()));
    config.rtp.port_max = 40_000;
    assert_eq!(fields(&config.validate().unwrap_err()), ["rtp.port_max"]);
    config.rtp.port_min = 0;
    assert_eq!(fields(&config.validate().unwrap_err()), ["rtp.port_min"]);
    config.rtp.port_max = 0;
    config.rtp.announced_ip = "::".into();
    config.rtp.listen_ip = "nowhere".into();
    assert_eq!(
        fields(&config.validate().unwrap_err()),
        ["rtp.listen_ip", "rtp.announced_ip"]
    );
    // OS-chosen ports never collide with a range.
    config.rtp = RtpConfig {
        port_min: 0,
        port_max: 0,
        ..RtpConfig::default()
    };
    assert_eq!(config.validate(), Ok(()));
    config.set("rtp.port_min", "41000").unwrap();
    assert_eq!(config.rtp.port_min, 41_000);
    config.rtp.port_min = 0;
    config.set("rtp.srtp_max_ssrcs", "0").unwrap();
    assert_eq!(
        fields(&config.validate().unwrap_err()),
        ["rtp.srtp_max_ssrcs"]
    );
}

#[test]
fn unsupported_codecs_fail_validation() {
    let mut config = Settings::default();
    let mut codec = opus();
    codec.mime_type = "audio/speex".into();
    config.media.codecs.push(codec);
    let errors = config.validate().unwrap_err();
    assert_eq!(errors[0].field, "media.codecs");
    assert!(errors[0].message.contains("speex"), "{}", errors[0].message);
}

#[test]
fn toml_round_trips_including_codecs() {
    let mut config = Settings::default();
    config.media.codecs.push(opus());
    config.rpc.token = "a-secret-of-32-characters-......".to_owned();
    let text = config.to_toml_string().unwrap();
    assert_eq!(Settings::from_toml_str(&text), Ok(config));
}

#[test]
fn partial_document_keeps_other_defaults() {
    let config = Settings::from_toml_str(
        "[server]\nworkers = 3\n\n[log]\nformat = \"json\"\n\n\
         [[media.codecs]]\nkind = \"audio\"\nmime_type = \"audio/opus\"\nclock_rate = 48000\n",
    )
    .unwrap();
    assert_eq!(config.server.workers, 3);
    assert_eq!(
        config.server.shutdown_timeout_ms,
        ServerConfig::default().shutdown_timeout_ms
    );
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.media.codecs.len(), 1);
    assert_eq!(config.rpc, RpcConfig::default());
}

#[test]
fn unknown_key_is_named_with_its_line_and_the_valid_names() {
    let errors = Settings::from_toml_str("[limits]\nmax_room = 5\n").unwrap_err();
    assert_eq!(fields(&errors), ["limits.max_room"]);
    let message = &errors[0].message;
    assert!(message.contains("unknown field `max_room`"), "{message}");
    assert!(message.contains("max_rooms"), "{message}");
    assert!(message.contains("line 2, column 1"), "{message}");
}

#[test]
fn unknown_section_and_top_level_key_are_errors() {
    let errors = Settings::from_toml_str("workers = 2\n[rcp]\nlisten = \"x\"\n").unwrap_err();
    assert_eq!(fields(&errors), ["workers", "rcp"]);
}

#[test]
fn wrong_type_names_the_field() {
    let errors = Settings::from_toml_str("[server]\nworkers = \"many\"\n").unwrap_err();
    assert_eq!(fields(&errors), ["server.workers"]);
    assert!(errors[0].message.contains("invalid type: string \"many\""));
    assert!(errors[0].message.contains("line 2, column 11"));
    assert_eq!(
        errors[0].to_string(),
        format!("server.workers: {}", errors[0].message)
    );
}

#[test]
fn every_bad_field_is_reported_in_document_order() {
    let text = "[server]\nworkers = -1\nshutdown_timeout_ms = 10\n\n\
                [log]\nformat = \"xml\"\n\n[limits]\nmax_rooms = true\nmax_roms = 1\n";
    let errors = Settings::from_toml_str(text).unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "server.workers",
            "log.format",
            "limits.max_rooms",
            "limits.max_roms"
        ]
    );
    assert!(errors[1].message.contains("expected `human` or `json`"));
}

#[test]
fn codec_entries_are_located_by_index() {
    let text = "[[media.codecs]]\nkind = \"audio\"\nmime_type = \"audio/opus\"\nclock_rate = 48000\n\
                [[media.codecs]]\nkind = \"video\"\nmime_type = \"video/VP8\"\nclock_rate = -90000\n";
    let errors = Settings::from_toml_str(text).unwrap_err();
    assert_eq!(fields(&errors), ["media.codecs[1].clock_rate"]);
    assert!(errors[0].message.contains("line 8"));
}

#[test]
fn syntax_error_is_one_error_with_a_line() {
    let errors = Settings::from_toml_str("[server\nworkers = 1\n").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "");
    assert!(errors[0].message.starts_with("invalid TOML"));
    assert!(errors[0].message.contains("line 1"));
    assert_eq!(errors[0].to_string(), errors[0].message);
}

// --- validation ---

#[test]
fn every_problem_is_reported_at_once() {
    let mut config = Settings::default();
    config.server.shutdown_timeout_ms = 0;
    config.limits = LimitsConfig {
        max_rooms: 0,
        max_peers_per_room: 0,
        max_transports_per_room: 0,
        max_producers_per_transport: 0,
        max_consumers_per_transport: 0,
        max_sdp_bytes: 0,
        max_sdp_media_sections: 0,
        max_sdp_ssrc_lines: 0,
    };
    config.media.retransmission_max_age_ms = 0;
    config.media.keyframe_request_interval_ms = 0;
    config.media.sender_report_interval_ms = 0;
    config.media.nack_max_resends_per_nack = 0;
    config.media.nack_max_resends_per_second = 0;
    config.media.nack_default_rtt_ms = 0;
    config.rpc.max_frame_bytes = 0;
    config.rpc.max_connections = 0;
    config.rpc.request_timeout_ms = 0;
    config.rpc.max_preauth_frame_bytes = 0;
    config.rpc.max_preauth_connections = 0;
    config.rpc.auth_timeout_ms = 0;
    config.rpc.read_timeout_ms = 0;
    config.rpc.max_message_values = 0;
    config.rpc.max_protocol_errors = 0;
    config.rpc.max_refusals_in_flight = 0;
    config.log.level = " ".to_owned();
    let errors = config.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "server.shutdown_timeout_ms",
            "limits.max_rooms",
            "limits.max_peers_per_room",
            "limits.max_transports_per_room",
            "limits.max_producers_per_transport",
            "limits.max_consumers_per_transport",
            "limits.max_sdp_bytes",
            "limits.max_sdp_media_sections",
            "limits.max_sdp_ssrc_lines",
            "media.retransmission_max_age_ms",
            "media.keyframe_request_interval_ms",
            "media.sender_report_interval_ms",
            "media.nack_max_resends_per_nack",
            "media.nack_max_resends_per_second",
            "media.nack_default_rtt_ms",
            "rpc.max_frame_bytes",
            "rpc.max_connections",
            "rpc.request_timeout_ms",
            "rpc.max_preauth_frame_bytes",
            "rpc.max_preauth_connections",
            "rpc.auth_timeout_ms",
            "rpc.read_timeout_ms",
            "rpc.max_message_values",
            "rpc.max_protocol_errors",
            "rpc.max_refusals_in_flight",
            "log.level",
        ]
    );
    assert_eq!(
        errors[1].to_string(),
        "limits.max_rooms: must be at least 1, got 0"
    );
}

#[test]
fn worker_count_and_retransmission_buffer_are_bounded() {
    let mut config = Settings::default();
    // Let the OS pick ports, so the WebRTC port range does not bound the workers here.
    config.webrtc.port_min = 0;
    config.webrtc.port_max = 0;
    config.server.workers = MAX_WORKERS + 1;
    config.media.retransmission_buffer_packets = MAX_RETRANSMISSION_BUFFER_PACKETS + 1;
    let errors = config.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        ["server.workers", "media.retransmission_buffer_packets"]
    );
    config.server.workers = MAX_WORKERS;
    config.media.retransmission_buffer_packets = MAX_RETRANSMISSION_BUFFER_PACKETS;
    assert_eq!(config.validate(), Ok(()));
    config.media.retransmission_buffer_packets = 0;
    assert_eq!(
        fields(&config.validate().unwrap_err()),
        ["media.retransmission_buffer_packets"]
    );
}

#[test]
fn listen_addresses_must_be_socket_addresses_or_empty() {
    let mut config = Settings::default();
    config.rpc.listen = "x".to_owned();
    config.metrics.listen = "localhost:9700".to_owned();
    let errors = config.validate().unwrap_err();
    assert_eq!(fields(&errors), ["rpc.listen", "metrics.listen"]);
    assert!(
        errors[0]
            .message
            .starts_with("\"x\" is not a socket address")
    );

    config.rpc.listen = String::new();
    config.metrics.listen = String::new();
    assert_eq!(config.validate(), Ok(()));
    config.rpc.listen = "[::1]:0".to_owned();
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn token_is_required_off_loopback() {
    let mut config = Settings::default();
    for listen in ["0.0.0.0:7700", "192.0.2.2:7700", "[::]:7700"] {
        config.rpc.listen = listen.to_owned();
        let errors = config.validate().unwrap_err();
        assert_eq!(fields(&errors), ["rpc.token"], "{listen}");
        assert!(errors[0].message.contains(listen), "{}", errors[0]);
    }
    config.rpc.token = "s3cret-s3cret-s3cret".to_owned();
    assert_eq!(config.validate(), Ok(()));

    config.rpc.token = String::new();
    for listen in [
        "127.0.0.1:7700",
        "127.1.2.3:7700",
        "[::1]:7700",
        "[::ffff:127.0.0.1]:7700",
    ] {
        config.rpc.listen = listen.to_owned();
        assert_eq!(config.validate(), Ok(()), "{listen}");
    }
}

#[test]
fn short_tokens_are_refused() {
    let mut config = Settings::default();
    config.rpc.token = "x".repeat(MIN_RPC_TOKEN_BYTES - 1);
    let errors = config.validate().unwrap_err();
    assert_eq!(fields(&errors), ["rpc.token"]);
    assert!(
        errors[0].message.contains("at least 16 bytes"),
        "{}",
        errors[0]
    );
    config.rpc.token = "x".repeat(MIN_RPC_TOKEN_BYTES);
    assert_eq!(config.validate(), Ok(()));
    // No token at all is still fine on loopback.
    config.rpc.token = String::new();
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn rpc_and_metrics_must_not_share_a_port() {
    let mut config = Settings::default();
    config.rpc.listen = "127.0.0.1:7700".to_owned();
    config.metrics.listen = "127.0.0.1:7700".to_owned();
    assert_eq!(fields(&config.validate().unwrap_err()), ["metrics.listen"]);
    config.metrics.listen = "0.0.0.0:7700".to_owned();
    assert_eq!(fields(&config.validate().unwrap_err()), ["metrics.listen"]);
    // Different IPs, or OS-assigned ports, do not collide.
    config.metrics.listen = "127.0.0.2:7700".to_owned();
    assert_eq!(config.validate(), Ok(()));
    config.rpc.listen = "127.0.0.1:0".to_owned();
    config.metrics.listen = "127.0.0.1:0".to_owned();
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn unix_socket_path_must_fit_sun_path() {
    let mut config = Settings::default();
    config.rpc.unix_socket = format!("/tmp/{}", "s".repeat(MAX_UNIX_SOCKET_PATH_BYTES));
    assert_eq!(fields(&config.validate().unwrap_err()), ["rpc.unix_socket"]);
    config.rpc.unix_socket = "/run/switchboard.sock".to_owned();
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn codec_entries_are_checked() {
    let mut config = Settings::default();
    config.media.codecs = vec![opus(); 6];
    config.media.codecs[1].mime_type = String::new();
    config.media.codecs[1].preferred_payload_type = None;
    config.media.codecs[2].mime_type = "opus".to_owned();
    config.media.codecs[2].preferred_payload_type = Some(128);
    config.media.codecs[3].mime_type = "video/VP8".to_owned();
    config.media.codecs[3].clock_rate = 0;
    config.media.codecs[3].preferred_payload_type = Some(96);
    config.media.codecs[4].channels = Some(0);
    config.media.codecs[4].preferred_payload_type = Some(100);
    // [5] repeats [0]'s payload type 111.
    let errors = config.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "media.codecs[1].mime_type",
            "media.codecs[2].mime_type",
            "media.codecs[2].preferred_payload_type",
            "media.codecs[3].kind",
            "media.codecs[3].clock_rate",
            "media.codecs[4].channels",
            "media.codecs[5].preferred_payload_type",
        ]
    );
    assert!(errors[6].message.contains("media.codecs[0]"));
    // MIME types compare case-insensitively, as SDP does.
    config.media.codecs = vec![opus()];
    config.media.codecs[0].mime_type = "AUDIO/OPUS".to_owned();
    assert_eq!(config.validate(), Ok(()));
}

// --- environment ---

#[test]
fn env_sets_strings_integers_and_enums() {
    let mut config = Settings::default();
    config
        .apply_env(env(&[
            ("SWITCHBOARD_RPC__LISTEN", "0.0.0.0:7701"),
            ("SWITCHBOARD_RPC__TOKEN", "t0123456789abcdef"),
            ("SWITCHBOARD_SERVER__WORKERS", "4"),
            ("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS", "1_500"),
            ("SWITCHBOARD_LOG__FORMAT", "json"),
            ("SWITCHBOARD_METRICS__LISTEN", ""),
        ]))
        .unwrap();
    assert_eq!(config.rpc.listen, "0.0.0.0:7701");
    assert_eq!(config.rpc.token, "t0123456789abcdef");
    assert_eq!(config.server.workers, 4);
    assert_eq!(config.server.shutdown_timeout_ms, 1_500);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.metrics.listen, "");
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn env_ignores_other_and_reserved_variables() {
    let mut config = Settings::default();
    config
        .apply_env(env(&[
            ("PATH", "/usr/bin"),
            ("SWITCHBOARD_CONFIG", "/etc/switchboard.toml"),
            ("switchboard_server__workers", "x"),
        ]))
        .unwrap();
    assert_eq!(config, Settings::default());
}

#[test]
fn env_errors_name_the_variable_and_change_nothing() {
    let mut config = Settings::default();
    let errors = config
        .apply_env(env(&[
            ("SWITCHBOARD_SERVER__WORKERS", "lots"),
            ("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS", "-5"),
            ("SWITCHBOARD_LOG__FORMAT", "xml"),
            ("SWITCHBOARD_RPC__LISTN", "127.0.0.1:1"),
            ("SWITCHBOARD_RCP__LISTEN", "127.0.0.1:1"),
            ("SWITCHBOARD_WORKERS", "2"),
            ("SWITCHBOARD_RPC__LISTEN__PORT", "1"),
            ("SWITCHBOARD_LIMITS__MAX_ROOMS", "7"),
        ]))
        .unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "SWITCHBOARD_LOG__FORMAT",
            "SWITCHBOARD_RCP__LISTEN",
            "SWITCHBOARD_RPC__LISTEN__PORT",
            "SWITCHBOARD_RPC__LISTN",
            "SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS",
            "SWITCHBOARD_SERVER__WORKERS",
            "SWITCHBOARD_WORKERS",
        ]
    );
    let message = |name: &str| {
        errors
            .iter()
            .find(|e| e.field == name)
            .map(|e| e.message.clone())
            .unwrap()
    };
    assert!(message("SWITCHBOARD_SERVER__WORKERS").contains("expected an integer, got \"lots\""));
    assert!(message("SWITCHBOARD_SERVER__WORKERS").contains("(setting server.workers)"));
    assert!(
        message("SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS")
            .starts_with("server.shutdown_timeout_ms: invalid value: integer `-5`")
    );
    assert!(message("SWITCHBOARD_LOG__FORMAT").contains("unknown variant `xml`"));
    assert!(message("SWITCHBOARD_RPC__LISTN").starts_with("rpc.listn: unknown field `listn`"));
    assert!(message("SWITCHBOARD_RCP__LISTEN").contains("unknown field `rcp`"));
    assert!(message("SWITCHBOARD_WORKERS").contains("<SECTION>__<FIELD>"));
    assert!(message("SWITCHBOARD_RPC__LISTEN__PORT").contains("rpc.listen is a string"));
    // The one good variable is not applied either: a config is taken whole or not at all.
    assert_eq!(config, Settings::default());
}

#[test]
fn env_can_replace_a_list_with_toml() {
    let mut config = Settings::default();
    config
        .apply_env(env(&[(
            "SWITCHBOARD_MEDIA__CODECS",
            r#"[{ kind = "audio", mime_type = "audio/opus", clock_rate = 48000, channels = 2 }]"#,
        )]))
        .unwrap();
    assert_eq!(config.media.codecs.len(), 1);
    assert_eq!(config.media.codecs[0].channels, Some(2));

    let errors = config
        .apply_env(env(&[("SWITCHBOARD_MEDIA__CODECS", "opus")]))
        .unwrap_err();
    assert!(errors[0].message.contains("expected a TOML array"));
}

#[test]
fn set_takes_a_dotted_path() {
    let mut config = Settings::default();
    config.set("limits.max_rooms", "12").unwrap();
    assert_eq!(config.limits.max_rooms, 12);
    assert!(config.set("limits.max_rooms", "twelve").is_err());
    assert!(config.set("limits..max_rooms", "1").is_err());
    assert!(
        config
            .set("limits.nope", "1")
            .unwrap_err()
            .contains("unknown field `nope`")
    );
    assert_eq!(config.limits.max_rooms, 12);
}

#[test]
fn env_var_names_match_field_paths() {
    assert_eq!(
        Settings::env_var_name("rpc.listen"),
        "SWITCHBOARD_RPC__LISTEN"
    );
    assert_eq!(
        Settings::env_var_name("server.shutdown_timeout_ms"),
        "SWITCHBOARD_SERVER__SHUTDOWN_TIMEOUT_MS"
    );
    let mut config = Settings::default();
    config
        .apply_env([(
            Settings::env_var_name("media.sender_report_interval_ms"),
            "250".to_owned(),
        )])
        .unwrap();
    assert_eq!(config.media.sender_report_interval_ms, 250);
}
