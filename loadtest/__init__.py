"""Load against a running service: the Locust user (`locustfile`), the soak run (`soak`) and the
compose topology as local processes (`stack`)."""
