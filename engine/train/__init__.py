"""Training a graph from its spec's ``train:`` section: data, optimizers, the loop, checkpoints."""
