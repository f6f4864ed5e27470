"""Building and deploying the service: its container image (`python -m deploy.containerize`, `make
container`) and Kubernetes manifests (deploy/k8s)."""
