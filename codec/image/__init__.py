"""Image models: factorized / hyperprior / mean-scale (+ context) and mgm; families are registered in codec.registry."""
