"""The pipeline's stages. Each module (or package) exposes `run(cfg, inputs, out) -> dict`
and keeps all of its numerics; it knows nothing of the command line."""
