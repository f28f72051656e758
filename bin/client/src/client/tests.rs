use super::*;

#[test]
fn endpoints_parse() {
    assert_eq!(
        "127.0.0.1:7700".parse::<Endpoint>().unwrap(),
        Endpoint::Tcp("127.0.0.1:7700".into())
    );
    assert_eq!(
        "tcp://localhost:7700".parse::<Endpoint>().unwrap(),
        Endpoint::Tcp("localhost:7700".into())
    );
    assert_eq!(
        "unix:/run/sb.sock".parse::<Endpoint>().unwrap(),
        Endpoint::Unix("/run/sb.sock".into())
    );
    assert_eq!(
        "./sb.sock".parse::<Endpoint>().unwrap(),
        Endpoint::Unix("./sb.sock".into())
    );
    assert!("".parse::<Endpoint>().is_err());
}
