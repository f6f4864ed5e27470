"""Releasing the zoo: the BentoML model store (`release.store`), the shipped weights/ (`python -m
release.publish`, what `make publish-weights` runs) and the proof that this code trains them bit for
bit (`python -m release.verify_weights`, `make verify-weights`)."""
