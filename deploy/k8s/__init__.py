"""Kubernetes manifests of the service (base and overlays) and their tools: `python -m
deploy.k8s.validate` (`make k8s-validate`) and `python -m deploy.k8s.set_image` (`make k8s-image`)."""
