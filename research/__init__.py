"""Research and measurement beside the product, which never imports it: the paper's tables
(`reproduce`), the latency benchmark (`bench`), memory, scale, profile, soak and training-memory
runs, the one service launcher they and the tests share (`service_process`), their HTTP client
(`http_client`) and the configuration reference (`configuration`)."""
