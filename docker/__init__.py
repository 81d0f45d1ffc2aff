"""The container side of the project: the Dockerfiles, the stand-ins for images that cannot be
pulled, and the tools that build the images with podman (`docker.images`) and run
docker-compose.yml under podman-compose (`docker.compose`)."""
