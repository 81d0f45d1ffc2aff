"""Redis's side of the deployment: its users, one per role (users.acl), and the tool that gives
them passwords of one's own (`docker.redis.acl`)."""
