"""Training: the loop (`loop`), what it minimises (`objective`, with the auxiliary losses of
`losses`) and the held-out metrics (`evaluate`)."""
