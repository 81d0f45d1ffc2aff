"""Load against a running service with Locust: the simulated caller (`locustfile`, `workload`),
the load shape (`shape`), the headless run (`run`) and the compose topology as local processes
(`stack`)."""
