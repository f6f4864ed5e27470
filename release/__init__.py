"""Releasing the zoo: the BentoML model store (`python -m release.store`, the second half of
`make export`), the import of the shipped weights/ into it (`python -m release.shipped`, which
`make serve` runs first), the shipped weights themselves (`python -m release.publish`, what
`make publish-weights` runs) and the proof that this code trains them bit for bit
(`python -m release.verify_weights`, `make verify-weights`)."""
