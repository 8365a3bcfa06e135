//! updog over HTTPS (a real TLS server on 127.0.0.1 with a test CA the host is told to trust
//! through `SSL_CERT_FILE`) and through a real forward proxy (tinyproxy) with `HTTPS_PROXY`,
//! `NO_PROXY` and the configuration's `https_proxy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Release, Scenario, next_set};
use jiff::{SignedDuration, Timestamp};
use signpost::SetId;
use test_support::tls::{ForwardProxy, HttpsServer, TestCa};

fn past() -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * 10)
}

/// A scenario whose configuration points at `server` (serving its repository) over HTTPS,
/// plus `extra` configuration lines.
fn over_https(scenario: &Scenario, server: &HttpsServer, extra: &str) {
    let text = std::fs::read_to_string(&scenario.config).unwrap();
    let text = text
        .replace(&scenario.server.url("metadata/"), &server.url("metadata/"))
        .replace(&scenario.server.url("targets/"), &server.url("targets/"));
    std::fs::write(&scenario.config, format!("{text}{extra}")).unwrap();
}

fn stderr(output: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&output.get_output().stderr).into_owned()
}

#[test]
fn updates_over_https_only_when_the_ca_is_trusted() {
    let release = Release::new("1.1.0", 41);
    let scenario = Scenario::new(&release, past());
    let ca = TestCa::new(&scenario.path("ca"));
    let server = HttpsServer::start(&scenario.path("repo"), &ca);
    over_https(&scenario, &server, "");

    // Not trusted: the TLS handshake fails, nothing is written.
    let out = scenario
        .updog()
        .arg("update")
        .env_remove("SSL_CERT_FILE")
        .assert()
        .code(1);
    let text = stderr(&out);
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert_eq!(next_set(&scenario.disk), Some(SetId::A));

    let mut updog = scenario.updog();
    updog.arg("update").envs(ca.trust_env());
    updog.assert().code(0);
    scenario.assert_set_b_holds(&release);
    assert_eq!(next_set(&scenario.disk), Some(SetId::B));
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/metadata/timestamp.json")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains(&release.names()[0])),
        "{requests:?}"
    );
    // The plain HTTP server was never asked.
    assert!(scenario.server.log().is_empty());
}

#[test]
fn https_proxy_no_proxy_and_the_configured_proxy_are_honoured() {
    let release = Release::new("1.1.0", 43);
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&dir.path().join("ca"));
    let proxy = ForwardProxy::start(&dir.path().join("proxy"));

    // HTTPS_PROXY from the environment: every request goes through CONNECT.
    let scenario = Scenario::new(&release, past());
    let server = HttpsServer::start(&scenario.path("repo"), &ca);
    over_https(&scenario, &server, "");
    let mut updog = scenario.updog();
    updog
        .arg("update")
        .envs(ca.trust_env())
        .env_remove("NO_PROXY")
        .env("HTTPS_PROXY", proxy.url());
    updog.assert().code(0);
    scenario.assert_set_b_holds(&release);
    let tunnel = format!("CONNECT 127.0.0.1:{}", server.port);
    let connects = proxy.connects();
    assert!(
        connects.iter().any(|c| c.starts_with(&tunnel)),
        "{connects:?}"
    );

    // NO_PROXY names the server: the proxy sees nothing more.
    let scenario = Scenario::new(&release, past());
    let server = HttpsServer::start(&scenario.path("repo"), &ca);
    over_https(&scenario, &server, "");
    let before = proxy.connects().len();
    let mut updog = scenario.updog();
    updog
        .arg("update")
        .envs(ca.trust_env())
        .env("NO_PROXY", "127.0.0.1")
        .env("HTTPS_PROXY", proxy.url());
    updog.assert().code(0);
    assert_eq!(proxy.connects().len(), before);
    assert!(!server.requests().is_empty());

    // The configuration's https_proxy, with no proxy in the environment at all.
    let scenario = Scenario::new(&release, past());
    let server = HttpsServer::start(&scenario.path("repo"), &ca);
    over_https(
        &scenario,
        &server,
        &format!("https_proxy = \"{}\"\n", proxy.url()),
    );
    let mut updog = scenario.updog();
    updog
        .arg("update")
        .envs(ca.trust_env())
        .env_remove("NO_PROXY")
        .env_remove("HTTPS_PROXY");
    updog.assert().code(0);
    scenario.assert_set_b_holds(&release);
    let tunnel = format!("CONNECT 127.0.0.1:{}", server.port);
    assert!(proxy.connects().iter().any(|c| c.starts_with(&tunnel)));
}
