//! Start-up failures are errors that name the file and what to do, never panics.

mod common;

use common::{config, TestServer};
use ctrbid::server::Server;

async fn start_error(cfg: ctrbid::config::Config) -> String {
    match Server::bind(&cfg).await {
        Ok(_) => panic!("server started with a broken configuration"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_names_the_file_and_the_command() {
    let mut cfg = config();
    cfg.model.path = "/nonexistent/model.onnx".into();
    let err = start_error(cfg).await;
    assert!(err.contains("/nonexistent/model.onnx") && err.contains("make models"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_catalog_names_the_file() {
    let mut cfg = config();
    cfg.model.catalog = "/nonexistent/catalog.json".into();
    let err = start_error(cfg).await;
    assert!(err.contains("/nonexistent/catalog.json") && err.contains("make models"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_built_for_another_feature_spec_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    // Same fields, another seed: every index moves, so the model must not be used.
    let spec = std::fs::read_to_string(&cfg.model.spec)
        .unwrap()
        .replace("\"hash_seed\": 7046029254386353131", "\"hash_seed\": 1");
    let other = dir.path().join("other_spec.json");
    std::fs::write(&other, spec).unwrap();
    cfg.model.spec = other.clone();
    let err = start_error(cfg).await;
    assert!(err.contains("was built for feature spec") && err.contains(&other.display().to_string()), "{err}");
}

/// A spec that reads the aggregates is served only with a model built for it: the
/// default model, built for a spec without them, is refused as for any other spec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_with_aggregate_fields_needs_a_model_built_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    let spec = std::fs::read_to_string(&cfg.model.spec).unwrap().replace(
        r#""numeric": ["#,
        r#""numeric": [{"name": "user_ctr_7d", "source": "agg.user.ctr.7d", "prior": {"mean": 0.01, "strength": 50}},"#,
    );
    let with_aggregates = dir.path().join("aggregates_spec.json");
    std::fs::write(&with_aggregates, spec).unwrap();
    cfg.model.spec = with_aggregates.clone();
    let err = start_error(cfg).await;
    assert!(
        err.contains(&with_aggregates.display().to_string()) && err.contains("was built for feature spec"),
        "{err}"
    );
}

/// A model whose inputs are another spec's width names both specs and their field
/// counts, not the ONNX tensor types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_another_width_names_both_specs_and_their_fields() {
    let mut cfg = config();
    cfg.model.spec = common::repo().join("models/specs/default_without_crosses.json");
    let err = start_error(cfg).await;
    for said in [
        "was built for feature spec \"ctrbid-default\" (25 categorical and 3 numeric fields)",
        "default_without_crosses.json (\"ctrbid-default-without-crosses\", 19 categorical and 3 numeric fields)",
    ] {
        assert!(err.contains(said), "{said:?} in {err}");
    }
    assert!(!err.contains("Tensor"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_value_names_the_field() {
    let mut cfg = config();
    cfg.scoring.max_batch_rows = 0;
    let err = start_error(cfg).await;
    assert!(err.contains("scoring.max_batch_rows"), "{err}");
}

/// On 0.0.0.0 the default notice base would be `http://0.0.0.0:<port>`, which no
/// exchange can call: refused unless `server.notice_base_url` says where the bidder is,
/// and then every notice URL of a bid starts with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unspecified_listen_address_needs_a_notice_base_url() {
    for unspecified in ["0.0.0.0:0", "[::]:0"] {
        let mut cfg = config();
        cfg.server.listen = unspecified.parse().unwrap();
        let err = start_error(cfg).await;
        assert!(err.contains("server.notice_base_url") && err.contains(unspecified), "{err}");
    }
    let mut cfg = config();
    cfg.server.listen = "0.0.0.0:0".parse().unwrap();
    cfg.server.notice_base_url = Some("https://bid.example.com/".into());
    let server = TestServer::start(cfg).await;
    let sample =
        std::fs::read(common::repo().join("tests/fixtures/openrtb/prebid/appnexus-02e2f89eb2b8fcdd.json")).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let head = format!(
        "POST /openrtb2/bid HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        sample.len()
    );
    let raw = [head.as_bytes(), &sample].concat();
    let r = common::raw_to(addr, &raw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let bid = &r.json()["seatbid"][0]["bid"][0];
    for url in ["nurl", "burl", "lurl"] {
        assert!(bid[url].as_str().unwrap().starts_with("https://bid.example.com/"), "{url}: {bid}");
    }
    assert!(bid["adm"].as_str().unwrap().contains("href=\"https://bid.example.com/click?"), "{bid}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_configuration_starts() {
    let server = TestServer::start(config()).await;
    assert_eq!(server.admin_get("/readyz").await.status, 200);
    server.stop().await;
}

/// `scoring.device = "cuda"` never falls back to the CPU silently: without the `cuda`
/// feature, or with it but without a CUDA-capable ONNX Runtime and GPU (the PyPI
/// `onnxruntime` wheel has no CUDA provider), start-up fails and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuda_without_a_cuda_runtime_is_a_start_up_error() {
    let mut cfg = config();
    cfg.scoring.device = ctrbid::scoring::Device::Cuda;
    let err = start_error(cfg).await;
    assert!(err.contains("CUDA") || err.contains("cuda"), "{err}");
    if cfg!(not(feature = "cuda")) {
        assert!(err.contains("--features cuda"), "{err}");
    }
}

/// A notice key shorter than 32 bytes (README: "≥ 32 bytes") is refused at start-up,
/// naming the setting; 32 bytes start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_key_under_32_bytes_is_refused() {
    let key31 = "k".repeat(31);
    for field in ["notices.hmac_key", "notices.previous_hmac_key"] {
        let mut cfg = config();
        cfg.notices.hmac_key = Some("h".repeat(32));
        match field {
            "notices.hmac_key" => cfg.notices.hmac_key = Some(key31.clone()),
            _ => cfg.notices.previous_hmac_key = Some(key31.clone()),
        }
        let err = start_error(cfg).await;
        assert!(err.contains(field) && err.contains("at least 32 bytes"), "{field}: {err}");
    }
    let mut cfg = config();
    cfg.notices.hmac_key = Some("h".repeat(32));
    cfg.notices.previous_hmac_key = Some("p".repeat(32));
    let server = TestServer::start(cfg).await;
    assert_eq!(server.admin_get("/readyz").await.status, 200);
    server.stop().await;
}
