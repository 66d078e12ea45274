//! A missing ONNX Runtime library is a start-up error that says how to install it.
//! (Its own test binary: the library loads once per process.)

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_onnxruntime_library_says_what_to_run() {
    let mut cfg = common::config();
    cfg.model.onnxruntime_library = Some("/nonexistent/libonnxruntime.so".into());
    let err = match ctrbid::server::Server::bind(&cfg).await {
        Ok(_) => panic!("server started without ONNX Runtime"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("make setup-ort"), "{err}");
}
